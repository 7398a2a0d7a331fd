"""The link emulator's arithmetic (times passed in), and one real frame path."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from .bed import Direction, Port, WanBed, available
from .linkemu import Stage


def test_a_bottleneck_spaces_frames_at_its_rate_and_adds_delay() -> None:
    stage = Stage(Direction(rate_bps=1_000_000, delay_ms=40), random.Random(1))
    # three 1250-byte frames at once: 10 ms each on a 1 Mbit/s link
    times = [stage.admit(1250, arrival=5.0) for _ in range(3)]
    assert times == pytest.approx([5.05, 5.06, 5.07])


def test_a_full_queue_drops_at_the_tail() -> None:
    stage = Stage(Direction(rate_bps=100_000, queue_ms=100), random.Random(1))
    # 1250 bytes = 100 ms at 100 kbit/s: the third frame would wait 200 ms
    results = [stage.admit(1250, arrival=0.0) for _ in range(3)]
    assert results[0] is not None and results[1] is not None
    assert results[2] is None
    assert stage.counters.queue_dropped == 1
    # once the queue drained, frames pass again
    assert stage.admit(1250, arrival=1.0) is not None


def test_random_loss_is_seeded_and_near_its_rate() -> None:
    def lost(seed: int) -> list[bool]:
        stage = Stage(Direction(loss=0.03), random.Random(seed))
        return [stage.admit(1000, arrival=i * 0.001) is None for i in range(20000)]

    assert lost(1) == lost(1)
    assert 0.02 < sum(lost(1)) / 20000 < 0.04


def test_jitter_never_reorders() -> None:
    stage = Stage(Direction(delay_ms=50, jitter_ms=30), random.Random(3))
    times = [stage.admit(200, arrival=i * 0.001) for i in range(1000)]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert max(t - i * 0.001 for i, t in enumerate(times)) > 0.07  # type: ignore[operator]


def test_control_frames_are_never_lost() -> None:
    stage = Stage(Direction(loss=1.0, rate_bps=1000, queue_ms=1), random.Random(1))
    assert stage.admit(60, arrival=0.0, droppable=False) is not None
    assert stage.admit(60, arrival=0.0, droppable=False) is not None


ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9000))
while True:
    data, peer = s.recvfrom(2000)
    s.sendto(data, peer)
"""

PROBE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
rtts = []
for _ in range(5):
    sent = time.monotonic()
    s.sendto(b"x" * 100, (sys.argv[1], 9000))
    try:
        s.recvfrom(2000)
        rtts.append(time.monotonic() - sent)
    except OSError:
        pass
print(min(rtts) if rtts else -1)
"""


def probe(bed: WanBed) -> float:
    """The smallest of 5 UDP echo round trips from a to b (-1: none came)."""
    command = ["ip", "netns", "exec", bed.namespaces["a"], sys.executable]
    done = subprocess.run(
        [*command, "-c", PROBE, bed.address("b")],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


@pytest.mark.skipif(not available(), reason="needs root and iproute2")
def test_udp_crosses_the_emulated_link_with_its_delay() -> None:
    links = {"a": Port(""), "b": Port("", down=Direction(delay_ms=100))}
    with WanBed(links) as bed:
        bed.spawn("b", [sys.executable, "-c", ECHO, bed.address("b")])
        rtt = probe(bed)
    # an echo came back (the first may wait for ARP), and not before the
    # 100 ms the link to b holds each frame
    assert rtt >= 0.1
    assert bed.emulator_counters is not None
    assert bed.emulator_counters["p1"]["down"]["frames"] >= 5


@pytest.mark.skipif(not available(), reason="needs root and iproute2")
def test_a_link_changed_during_a_call_takes_effect() -> None:
    with WanBed({"a": Port(""), "b": Port("")}) as bed:
        bed.spawn("b", [sys.executable, "-c", ECHO, bed.address("b")])
        assert probe(bed) >= 0  # echoes come back
        bed.set_link("b", Port("", down=Direction(delay_ms=150)))
        assert probe(bed) >= 0.15
        bed.set_link("b", Port("", down=Direction(loss=1.0)))
        assert probe(bed) == -1  # every frame to b lost
    assert bed.emulator_counters is not None
    assert bed.emulator_counters["p1"]["down"]["lost"] >= 5
