"""Kernel receive timestamps put on the monotonic clock (issue 14): pure parts."""

from __future__ import annotations

import socket
import struct
import time

from pysfu._aiortc import receive, udpsock

TIMESPEC = struct.Struct("@ll")  # struct timespec: two C longs


def timestamp(seconds: int, nanoseconds: int) -> tuple[int, int, bytes]:
    """The ancillary data item the kernel gives with ``SO_TIMESTAMPNS``."""
    return (
        socket.SOL_SOCKET,
        udpsock.SO_TIMESTAMPNS,
        TIMESPEC.pack(seconds, nanoseconds),
    )


def test_a_kernel_timestamp_is_moved_onto_the_monotonic_clock() -> None:
    offset = -1_700_000_000.25  # monotonic - realtime
    arrival = udpsock.kernel_arrival([timestamp(1_700_000_100, 500_000_000)], offset)
    assert arrival is not None
    assert abs(arrival - 100.25) < 1e-6


def test_nanoseconds_survive_the_conversion_to_microseconds() -> None:
    # a float of wall-clock seconds keeps about 0.2 µs: plenty for an
    # estimator that counts milliseconds
    first = udpsock.kernel_arrival([timestamp(1_800_000_000, 1_000)], 0.0)
    second = udpsock.kernel_arrival([timestamp(1_800_000_000, 2_000)], 0.0)
    assert first is not None and second is not None
    assert abs((second - first) - 1e-6) < 5e-7


def test_other_ancillary_data_is_no_timestamp() -> None:
    assert udpsock.kernel_arrival([], 0.0) is None
    other = (socket.IPPROTO_IP, 8, bytes(12))  # IP_PKTINFO
    assert udpsock.kernel_arrival([other], 0.0) is None
    short = (socket.SOL_SOCKET, udpsock.SO_TIMESTAMPNS, bytes(4))
    assert udpsock.kernel_arrival([short], 0.0) is None
    found = udpsock.kernel_arrival([other, timestamp(5, 0)], 1.0)
    assert found == 6.0


def test_the_offset_maps_now_onto_now() -> None:
    before = time.monotonic()
    offset = udpsock.realtime_to_monotonic()
    mapped = time.time() + offset
    after = time.monotonic()
    # generous: the three clock reads may be preempted between each other
    assert before - 1.0 < mapped < after + 1.0


def test_aiortc_arrival_times_are_moved_onto_the_same_clock() -> None:
    """aiortc's stock path stamps RTP in wall-clock ms since 1900; packets
    on it and on pysfu's direct path feed one estimator."""
    offset = udpsock.realtime_to_monotonic()
    now_ntp_ms = int(time.time() * 1000) + 2_208_988_800_000
    mapped = receive.monotonic_ms_of_ntp_ms(now_ntp_ms, offset)
    assert abs(mapped - time.monotonic() * 1000) < 1000
    assert receive.monotonic_ms_of_ntp_ms(now_ntp_ms + 20, offset) == mapped + 20


def test_no_arrival_time_outside_a_batch() -> None:
    assert udpsock.arrival_time() is None
    udpsock.set_arrival(12.5)
    try:
        assert udpsock.arrival_time() == 12.5
    finally:
        udpsock.set_arrival(None)
    assert udpsock.arrival_time() is None
