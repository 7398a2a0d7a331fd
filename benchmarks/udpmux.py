"""Receiving cost per datagram: a socket per peer read by asyncio, a socket per
peer drained in batches with STUN first (pysfu's default since issue 21,
:mod:`pysfu._aiortc.udpsock`), and one shared, drained socket
(``IceConfig(shared_port=...)``, :mod:`pysfu._aiortc.udpmux`).

Only the receive path differs between the two modes of a pysfu server (SRTP,
forwarding and sending are the same code), so this measures that alone and
in isolation from the rest of the machine's load as far as possible: a child
process sends, like ``--peers`` publishers of rooms of two, bursts of
1,100-byte datagrams every 10 ms (``--rate`` datagrams/s in all) from a
socket per peer; this process receives them on 127.0.0.1 on a socket per
peer (``asyncio``: ``create_datagram_endpoint``, one datagram per readiness
event; ``drained``: a ``ConnectionSocket``, up to 256 per readiness event,
STUN first) or on one ``UdpMux`` (``shared``: every waiting datagram per
readiness event, STUN first), and hands each to a protocol that only counts
it. Reported per received datagram: CPU time of this process (user + system,
``getrusage``), event-loop iterations (selector calls) and wake-ups (times
the thread was scheduled in, from ``/proc/self/task/TID/schedstat``).

With ``--flood N`` the first peer also floods its own connection with N tiny
datagrams/s (a client spraying SCTP chunks) and sends a STUN binding request
(as a consent answer would be) after each 50 ms of them: reported is how
late those reach the protocol (``stun_delay_ms``, median and max).
``--lag-ms X`` makes every event loop iteration X ms longer (a callback
that spins, rescheduling itself): the loop of a server on a loaded machine
(under ``stress-ng --cpu 2`` pysfu's loop lagged 10-40 ms), reproducibly.

    python -m benchmarks.udpmux [--peers 40] [--rate 6400] [--work-us 50] [--json FILE]
    python -m benchmarks.udpmux --flood 2000 --lag-ms 20 --modes asyncio,drained
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import aioice.stun

from pysfu._aiortc import udpmux, udpsock

PAYLOAD = b"\x80" + b"x" * 1099  # an RTP-looking first byte
CHUNK = b"\x80" + b"x" * 39  # a flood of tiny datagrams
HOST = "127.0.0.1"
TICK = 0.010
PROBE_EVERY = 5  # ticks
MODES = ("asyncio", "drained", "shared")


def probe(peer: int = 0) -> bytes:
    """A STUN binding request for ``peer``, stamped with the time it is sent."""
    message = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.REQUEST,
    )
    message.attributes["USERNAME"] = f"peer{peer:04d}:bench"
    message.attributes["SOFTWARE"] = repr(time.monotonic())
    return bytes(message)


class Counter(asyncio.DatagramProtocol):
    """Counts datagrams; spins ``work`` s on each, standing for SRTP and
    forwarding (the same in both modes), so the loop is as busy as a server's."""

    def __init__(self, work: float = 0.0) -> None:
        self.count = 0
        self.work = work
        self.stun_delays: list[float] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[0] < 4:
            sent = aioice.stun.parse_message(data).attributes["SOFTWARE"]
            self.stun_delays.append(time.monotonic() - float(sent))
            return
        self.count += 1
        if self.work:
            end = time.perf_counter() + self.work
            while time.perf_counter() < end:
                pass


def send(
    ports: list[int], rate: float, flood: float, seconds: float, bound: Any
) -> None:
    """A socket per peer; every tick each sends its share of ``rate``, the
    first one also ``flood`` tiny datagrams/s and a STUN probe now and then."""
    socks = []
    for _ in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        socks.append(sock)
    bound.send([s.getsockname()[1] for s in socks])
    bound.recv()  # the receiver has learned the addresses
    per_tick = rate * TICK / len(socks)
    owed = [0.0] * len(socks)
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    flood_owed = 0.0
    ticks = 0
    sent = [0] * len(socks)  # media datagrams, not the flood
    while time.monotonic() < end:
        if flood:
            flood_owed += flood * TICK
            while flood_owed >= 1:
                flood_owed -= 1
                with contextlib.suppress(OSError):  # the socket buffer is full
                    socks[0].sendto(CHUNK, (HOST, ports[0]))
            ticks += 1
            if ticks % PROBE_EVERY == 0:
                socks[0].sendto(probe(), (HOST, ports[0]))
                if len(socks) > 1:  # and a well-behaved peer's
                    socks[1].sendto(probe(1), (HOST, ports[1]))
        for i, (sock, port) in enumerate(zip(socks, ports, strict=True)):
            owed[i] += per_tick
            while owed[i] >= 1:
                owed[i] -= 1
                sock.sendto(PAYLOAD, (HOST, port))
                sent[i] += 1
        next_tick += TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))
    bound.send(sent)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scheduled_in() -> int:
    path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
    try:
        return int(path.read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 0


async def run(
    mode: str,
    peers: int,
    rate: float,
    flood: float,
    seconds: float,
    work_us: float,
    lag_ms: float = 0.0,
    media_per_wakeup: int | None = None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if media_per_wakeup is not None:  # e.g. 256: as before the cap
        udpsock.MAX_MEDIA_PER_WAKEUP = media_per_wakeup
    selects = [0]
    selector = loop._selector  # type: ignore[attr-defined]
    select = selector.select

    def counting_select(timeout: float | None = None) -> Any:
        selects[0] += 1
        return select(timeout)

    selector.select = counting_select
    counters = [Counter(work_us / 1e6) for _ in range(peers)]
    closers = []
    mux_transports = []
    if mode == "shared":
        mux = udpmux.mux_for(HOST, 0)
        for i, counter in enumerate(counters):
            mux_transports.append(mux.register(counter, f"peer{i:04d}"))  # type: ignore[arg-type]
        ports = [mux.port] * peers
        closers = [t.close for t in mux_transports]
    elif mode == "drained":
        ports = []
        for counter in counters:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)  # aioice's
            sock.bind((HOST, 0))
            transport = udpsock.open_connection_socket(sock, counter)
            ports.append(sock.getsockname()[1])
            closers.append(transport.close)
    else:
        ports = []
        for counter in counters:
            transport, _ = await loop.create_datagram_endpoint(
                lambda c=counter: c, local_addr=(HOST, 0)
            )
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)  # aioice's
            ports.append(transport.get_extra_info("sockname")[1])
            closers.append(transport.close)
    here, there = multiprocessing.Pipe()
    sender = multiprocessing.Process(
        target=send, args=(ports, rate, flood, seconds + 2, there)
    )
    sender.start()
    sender_ports = await loop.run_in_executor(None, here.recv)
    for transport, port in zip(mux_transports, sender_ports, strict=False):
        transport.learn((HOST, port))
    here.send(True)
    lagging = True

    def lag() -> None:  # every loop iteration spins lag_ms
        end = time.perf_counter() + lag_ms / 1e3
        while time.perf_counter() < end:
            pass
        if lagging:
            loop.call_soon(lag)

    if lag_ms:
        loop.call_soon(lag)
    await asyncio.sleep(1)  # settle
    counters[0].stun_delays.clear()
    counters[-1].stun_delays.clear()
    start = (sum(c.count for c in counters), cpu_seconds(), selects[0], scheduled_in())
    await asyncio.sleep(seconds)
    end = (sum(c.count for c in counters), cpu_seconds(), selects[0], scheduled_in())
    delays = list(counters[0].stun_delays)
    normal_delays = list(counters[1].stun_delays) if peers > 1 else []
    lagging = False
    sent = await loop.run_in_executor(None, here.recv)
    await loop.run_in_executor(None, sender.join)
    await asyncio.sleep(0.5)  # what is still queued
    normal_handed_on = sum(c.count for c in counters[1:])
    for close in closers:
        close()
    await asyncio.sleep(0.1)
    selector.select = select
    received = max(end[0] - start[0], 1)
    return {
        "mode": mode,
        "peers": peers,
        "rate": rate,
        "work_us": work_us,
        "received_per_second": received / seconds,
        "cpu_us_per_datagram": (end[1] - start[1]) * 1e6 / received,
        "loop_iterations_per_datagram": (end[2] - start[2]) / received,
        "wakeups_per_datagram": (end[3] - start[3]) / received,
        "flood": flood,
        "lag_ms": lag_ms,
        "stun_probes": len(delays),
        "stun_probes_sent": int(seconds / (TICK * PROBE_EVERY)) if flood else 0,
        "stun_delay_ms_median": statistics.median(delays) * 1e3 if delays else None,
        "stun_delay_ms_max": max(delays) * 1e3 if delays else None,
        # of what the well-behaved peers (all but the first) sent in the
        # whole run, the share handed on (the rest the kernel dropped)
        "normal_delivered_share": (
            normal_handed_on / max(sum(sent[1:]), 1) if peers > 1 else None
        ),
        "normal_stun_delay_ms_median": (
            statistics.median(normal_delays) * 1e3 if normal_delays else None
        ),
        "normal_stun_delay_ms_max": (
            max(normal_delays) * 1e3 if normal_delays else None
        ),
        "media_per_wakeup": udpsock.MAX_MEDIA_PER_WAKEUP,
    }


RECV_WAYS = ("recvfrom_into", "recvmsg_into", "recvmsg_into+timestamps")


def recv_cost(way: str, datagrams: int = 200, rounds: int = 300) -> dict[str, Any]:
    """CPU time per datagram of reading ``datagrams`` waiting 1,100-byte
    datagrams ``rounds`` times: ``recvfrom_into`` (pysfu's reader before
    kernel timestamps), ``recvmsg_into`` without and with ``SO_TIMESTAMPNS``
    and the conversion of the timestamp (what the reader does now)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.bind((HOST, 0))
    receiver.setblocking(False)
    if way.endswith("timestamps"):
        udpsock.enable_kernel_timestamps(receiver)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = receiver.getsockname()
    view = memoryview(bytearray(65536))
    buffers = [view]
    ancillary = socket.CMSG_SPACE(16)
    spent = 0.0
    read = 0
    try:
        for _ in range(rounds):
            for _ in range(datagrams):
                sender.sendto(PAYLOAD, address)
            began = time.process_time()
            offset = udpsock.realtime_to_monotonic()
            while True:
                try:
                    if way == "recvfrom_into":
                        size, _ = receiver.recvfrom_into(view)
                    else:
                        size, ancdata, _, _ = receiver.recvmsg_into(buffers, ancillary)
                        if ancdata:
                            udpsock.kernel_arrival(ancdata, offset)
                except BlockingIOError:
                    break
                view[:size].tobytes()
                read += 1
            spent += time.process_time() - began
    finally:
        receiver.close()
        sender.close()
    return {"way": way, "datagrams": read, "cpu_us_per_datagram": spent * 1e6 / read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=40)
    parser.add_argument("--rate", type=float, default=6400.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--flood",
        type=float,
        default=0.0,
        help="tiny datagrams/s the first peer floods its connection with",
    )
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--lag-ms", type=float, default=0.0, help="ms added to every loop iteration"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--work-us",
        type=float,
        default=0.0,
        help="CPU spent on each datagram, as SRTP and forwarding would",
    )
    parser.add_argument(
        "--media-per-wakeup",
        type=int,
        help="media datagrams a drained socket hands on per readiness event"
        " (pysfu: udpsock.MAX_MEDIA_PER_WAKEUP; 256 was the reader before)",
    )
    parser.add_argument(
        "--recv-cost",
        action="store_true",
        help="only measure the CPU per datagram of recvfrom and of recvmsg"
        " with and without kernel timestamps",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.recv_cost:
        recv_rows = [recv_cost(way) for way in RECV_WAYS for _ in range(args.repeat)]
        for row in recv_rows:
            print(
                f"{row['way']:>24}  {row['cpu_us_per_datagram']:.2f} µs CPU"
                " per datagram"
            )
        if args.json:
            args.json.write_text(json.dumps({"rows": recv_rows}, indent=2))
        return
    rows = []
    for _ in range(args.repeat):
        for mode in args.modes.split(","):
            row = asyncio.run(
                run(
                    mode,
                    args.peers,
                    args.rate,
                    args.flood,
                    args.seconds,
                    args.work_us,
                    args.lag_ms,
                    args.media_per_wakeup,
                )
            )
            rows.append(row)
            print(
                f"{mode:>14}  {row['peers']:3d} peers  "
                f"{row['received_per_second']:7.0f} dgram/s  "
                f"{row['cpu_us_per_datagram'] - row['work_us']:6.1f} µs CPU "
                "(beyond the work)  "
                f"{row['loop_iterations_per_datagram']:.3f} loop iterations  "
                f"{row['wakeups_per_datagram']:.3f} wake-ups per datagram",
                flush=True,
            )
            if args.flood and row["normal_delivered_share"] is not None:
                normal = row["normal_stun_delay_ms_median"]
                print(
                    f"{'':>14}  normal peers: {row['normal_delivered_share']:.1%}"
                    " of their datagrams handed on, STUN delay median "
                    + ("-" if normal is None else f"{normal:.1f} ms"),
                    flush=True,
                )
            if args.flood:
                median, most = row["stun_delay_ms_median"], row["stun_delay_ms_max"]
                print(
                    f"{'':>14}  flooder's STUN: {row['stun_probes']}/"
                    f"{row['stun_probes_sent']} arrived, delay median "
                    + ("-" if median is None else f"{median:.1f} ms")
                    + ", max "
                    + ("-" if most is None else f"{most:.1f} ms"),
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"pid": os.getpid(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
