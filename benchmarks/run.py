"""The benchmark suite of issue 7: pysfu against aiortc MediaRelay and Janus.

One command runs every part for every mode, prints tables and ratios and
writes a JSON file::

    python -m benchmarks.run            # the full suite (about 25 minutes)
    python -m benchmarks.run --quick    # every part, small and short (~5 min)
    python -m benchmarks.run --parts fanout --modes pysfu,janus --fanout 16

Parts (each case starts a fresh server process, measured alone with psutil):

- ``fanout``: 1 publisher -> N subscribers: server CPU µs per forwarded
  packet, loss, peak RSS, and the one-way delay of each video frame through
  the server (p50/p95/p99).
- ``rooms``: R concurrent rooms of a host and a participant who both publish
  audio and video and receive each other: forwarded packets per server
  CPU-second, loss.
- ``latejoin``: a publisher runs; subscribers join one at a time; time from
  the subscribe request (and from the connection being up) to the first
  complete VP8 keyframe received.
- ``memory``: one server, subscribers added in steps: RSS at each step and
  the growth per subscriber.

The whole run happens in a fresh network namespace that has only loopback
(the command re-executes itself under ``unshare --net``; root needed), with
an ``ifb`` device carrying 127.0.0.1/32 so Janus finds an interface for ICE.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from .harness.clients import Directory, Member, close_all, snapshot
from .harness.clip import Media, SendLog, encode_media
from .harness.counting import LoadWindow
from .harness.janus import JanusProcess, JanusSession, janus_available
from .harness.linejson import ROOM
from .harness.processes import (
    NETNS_ENV,
    ServerProcess,
    cpu_seconds,
    memory,
    reexec_in_netns,
    wakeups,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "suite.json"
#: ``mux``: pysfu with one shared UDP port (``IceConfig(shared_port=0)``)
MODES = ("pysfu", "mux", "relay", "janus")
PARTS = ("fanout", "rooms", "latejoin", "memory")
#: Inside the namespace: loopback up, plus 127.0.0.1 on an ifb device for Janus.
NETNS_SETUP = (
    "ip link set lo up && "
    "{ ip link add bench0 type ifb && ip addr add 127.0.0.1/32 dev bench0 && "
    "ip link set bench0 up || echo 'no ifb device: janus will not connect' >&2; }"
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# servers


class Server:
    """The server of one case: ``server.py`` (pysfu, relay) or ``janus``."""

    #: the CPUs the server runs on (None: wherever the kernel puts it)
    cpus: set[int] | None = None
    #: event loop of the Python servers (``server.py --loop``)
    loop = "asyncio"

    def __init__(self, mode: str, capacity: int) -> None:
        self.mode = mode
        self.capacity = capacity
        self._server: ServerProcess | None = None
        self._janus: JanusProcess | None = None
        self._session: JanusSession | None = None
        self._ps: psutil.Process | None = None

    async def start(self) -> Directory:
        if self.mode == "janus":
            self._janus = JanusProcess()
            port = await self._janus.start()
            self._ps = psutil.Process(self._janus.pid)
            self._pin()
            self._session = JanusSession(port)
            await self._session.start()
            return Directory("janus", janus=self._session)
        options = ("--loop", self.loop)
        if self.mode == "mux":  # the same server on one shared UDP port
            options += ("--shared-port", "0")
        mode = "pysfu" if self.mode == "mux" else self.mode
        self._server = ServerProcess(mode, self.capacity, options)
        port = await self._server.listen()
        self._ps = psutil.Process(self._server.pid)
        self._pin()
        return Directory(mode, port=port)

    def _pin(self) -> None:
        """Keep the server on its own CPU(s), away from the load generator:
        threads started later inherit it."""
        if self.cpus is None or self._ps is None:
            return
        for thread in self._ps.threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.id, self.cpus)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all threads)."""
        assert self._ps is not None
        return cpu_seconds(self._ps)

    def wakeups(self) -> int:
        """Times the server's threads were scheduled in so far."""
        assert self._ps is not None
        return wakeups(self._ps)

    def rss(self) -> int:
        assert self._ps is not None
        return memory(self._ps, "VmRSS")

    def peak_rss(self) -> int:
        assert self._ps is not None
        return memory(self._ps, "VmHWM")

    @property
    def alive(self) -> bool:
        if self._janus is not None:
            return self._janus.alive
        return self._server is not None and self._server.alive

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._janus is not None:
            await self._janus.stop()
        if self._server is not None:
            await self._server.stop()


@contextlib.asynccontextmanager
async def running(mode: str, capacity: int = 64) -> Any:
    server = Server(mode, capacity)
    try:
        directory = await server.start()
        yield server, directory
    finally:
        await server.stop()


async def join_all(members: list[Member], timeout: float, batch: int = 8) -> None:
    """Join members a batch at a time (every ICE/DTLS setup costs CPU)."""
    for start in range(0, len(members), batch):
        group = members[start : start + batch]
        await asyncio.gather(*(m.join(timeout) for m in group))
    await asyncio.gather(*(m.receiving(timeout) for m in members))


@dataclass
class Window:
    """A measured window: the load generator's counters and the server's CPU."""

    load: LoadWindow
    server_cpu: float
    latencies: list[float]
    #: times the server's threads were scheduled in (woken) in the window
    server_wakeups: int = 0


async def measure(
    server: Server,
    publishers: list[Member],
    receivers: list[Member],
    seconds: float,
) -> Window:
    marks = [len(m.receiver.latencies) for m in receivers if m.receiver]
    wakeups_before = server.wakeups()
    cpu_before, before = server.cpu_seconds(), await snapshot(publishers, receivers)
    await asyncio.sleep(seconds)
    cpu_after, after = server.cpu_seconds(), await snapshot(publishers, receivers)
    wakeups_after = server.wakeups()
    if not server.alive:
        raise RuntimeError("the server exited during the measurement")
    latencies = [
        delay
        for member, mark in zip(receivers, marks, strict=True)
        if member.receiver
        for delay in member.receiver.latencies[mark:]
    ]
    return Window(
        LoadWindow.between(before, after),
        cpu_after - cpu_before,
        latencies,
        wakeups_after - wakeups_before,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def problems_of(members: list[Member]) -> list[str]:
    return [p for m in members for p in m.problems()][:10]


# ----------------------------------------------------------------------------
# parts


@dataclass
class FanoutResult:
    mode: str
    subscribers: int
    repeat: int = 0
    forwarded_pps: float = 0.0
    server_cpu_us_per_packet: float = 0.0
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    loss_percent: float = 0.0
    delivered_percent: float = 0.0
    server_peak_rss_mb: float = 0.0
    publisher_video_kbps: float = 0.0
    latency_samples: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    #: server CPU with the same connections up and the publisher paused: what
    #: the peers cost per second whatever media flows (RTCP, ICE consent, timers)
    idle_cpu_percent: float | None = None
    #: server wake-ups per packet it received (the publisher's)
    wakeups_per_inbound_packet: float = 0.0
    error: str | None = None
    problems: list[str] = field(default_factory=list)


async def idle_cpu_percent(server: Server, publisher: Member, seconds: float) -> float:
    """Server CPU % while ``publisher`` sends nothing and every peer stays
    connected (its RTCP and ICE consent checks go on)."""
    for track in publisher.tracks.values():
        track.pause()
    try:
        await asyncio.sleep(2)  # let the last packets drain
        before = server.cpu_seconds()
        await asyncio.sleep(seconds)
        return 100 * (server.cpu_seconds() - before) / seconds
    finally:
        for track in publisher.tracks.values():
            track.resume()


def record_window(
    result: FanoutResult | RoomsResult, server: Server, window: Window, receivers: int
) -> None:
    """Fill in what every load case reports about its measured window;
    ``receivers``: how many receive each published packet."""
    load = window.load
    packets = load.received_packets
    result.forwarded_pps = packets / load.seconds
    result.server_cpu_us_per_packet = window.server_cpu * 1e6 / packets
    result.server_cpu_percent = 100 * window.server_cpu / load.seconds
    result.client_cpu_percent = 100 * load.client_cpu_seconds / load.seconds
    expected = max(load.expected_packets, 1)
    published = max(sum(load.sent_packets.values()), 1)
    result.loss_percent = 100 * (1 - packets / expected)
    result.delivered_percent = 100 * packets / (published * receivers)
    result.server_peak_rss_mb = server.peak_rss() / 2**20
    # each packet the server received reached ``receivers`` receivers
    inbound = max(packets / receivers, 1)
    result.wakeups_per_inbound_packet = window.server_wakeups / inbound


async def fanout_case(
    mode: str, subscribers: int, repeat: int, media: Media, args: argparse.Namespace
) -> FanoutResult:
    result = FanoutResult(mode, subscribers, repeat)
    async with running(mode, subscribers + 1) as (server, directory):
        send_log = SendLog()
        publisher = Member(directory, ROOM, "pub", "host", media, [], send_log)
        subs = [
            Member(directory, ROOM, f"sub{i}", "participant", None, ["pub"], send_log)
            for i in range(subscribers)
        ]
        try:
            await join_all([publisher], args.timeout)
            await join_all(subs, args.timeout)
            await asyncio.sleep(args.warmup)
            window = await measure(server, [publisher], subs, args.seconds)
            load = window.load
            if not load.received_packets:
                raise RuntimeError("the subscribers received nothing in the window")
            record_window(result, server, window, subscribers)
            result.publisher_video_kbps = (
                load.sent_octets.get("video", 0) * 8 / load.seconds / 1000
            )
            result.latency_samples = len(window.latencies)
            if window.latencies:
                ms = [1000 * d for d in window.latencies]
                result.latency_p50_ms = percentile(ms, 50)
                result.latency_p95_ms = percentile(ms, 95)
                result.latency_p99_ms = percentile(ms, 99)
            if args.idle > 0:
                result.idle_cpu_percent = await idle_cpu_percent(
                    server, publisher, args.idle
                )
        finally:
            result.problems = problems_of([publisher, *subs])
            await close_all([*subs, publisher])
    return result


@dataclass
class RoomsResult:
    mode: str
    rooms: int
    forwarded_pps: float = 0.0
    packets_per_cpu_second: float = 0.0
    server_cpu_us_per_packet: float = 0.0
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    loss_percent: float = 0.0
    delivered_percent: float = 0.0
    server_peak_rss_mb: float = 0.0
    wakeups_per_inbound_packet: float = 0.0
    error: str | None = None
    problems: list[str] = field(default_factory=list)


async def rooms_case(
    mode: str, rooms: int, media: Media, args: argparse.Namespace
) -> RoomsResult:
    result = RoomsResult(mode, rooms)
    async with running(mode, 4) as (server, directory):
        hosts = [
            Member(directory, f"room{r}", f"r{r}-host", "host", media, [f"r{r}-guest"])
            for r in range(rooms)
        ]
        guests = [
            Member(
                directory,
                f"room{r}",
                f"r{r}-guest",
                "participant",
                media,
                [f"r{r}-host"],
            )
            for r in range(rooms)
        ]
        members = [*hosts, *guests]
        try:
            # One room at a time, each until its media flows both ways: many
            # concurrent ICE/DTLS handshakes starve a loaded 2-core machine.
            # In each room both publish (the host first: a pysfu room needs
            # its host), then both subscribe to the other.
            for host, guest in zip(hosts, guests, strict=True):
                await host.publish(args.timeout)
                await guest.publish(args.timeout)
                await asyncio.gather(
                    host.subscribe(args.timeout), guest.subscribe(args.timeout)
                )
                await asyncio.gather(
                    host.receiving(args.timeout), guest.receiving(args.timeout)
                )
            await asyncio.sleep(args.warmup)
            window = await measure(server, members, members, args.seconds)
            load = window.load
            if not load.received_packets or not window.server_cpu:
                raise RuntimeError("nothing was forwarded in the window")
            # every published packet goes to exactly one receiver
            record_window(result, server, window, 1)
            result.packets_per_cpu_second = load.received_packets / window.server_cpu
        finally:
            result.problems = problems_of(members)
            await close_all([*guests, *hosts])
    return result


@dataclass
class LateJoinResult:
    mode: str
    joins: int = 0
    from_subscribe_ms: list[float] = field(default_factory=list)
    from_connected_ms: list[float] = field(default_factory=list)
    median_from_subscribe_ms: float | None = None
    max_from_subscribe_ms: float | None = None
    median_from_connected_ms: float | None = None
    error: str | None = None
    problems: list[str] = field(default_factory=list)


async def latejoin_case(
    mode: str, media: Media, args: argparse.Namespace
) -> LateJoinResult:
    result = LateJoinResult(mode)
    async with running(mode, args.latejoins + 2) as (_server, directory):
        publisher = Member(directory, ROOM, "pub", "host", media, [])
        steady = Member(directory, ROOM, "steady", "participant", None, ["pub"])
        try:
            await join_all([publisher], args.timeout)
            await join_all([steady], args.timeout)
            await asyncio.sleep(1.0)
            for index in range(args.latejoins):
                joiner = Member(
                    directory, ROOM, f"late{index}", "participant", None, ["pub"]
                )
                try:
                    await join_all([joiner], args.timeout)
                    receiver = joiner.receiver
                    assert receiver is not None
                    deadline = time.monotonic() + args.timeout
                    while receiver.first_keyframe_at is None:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{joiner.name}: no keyframe")
                        await asyncio.sleep(0.01)
                    assert receiver.subscribed_at and receiver.connected_at
                    result.from_subscribe_ms.append(
                        1000 * (receiver.first_keyframe_at - receiver.subscribed_at)
                    )
                    result.from_connected_ms.append(
                        1000 * (receiver.first_keyframe_at - receiver.connected_at)
                    )
                    result.problems += joiner.problems()
                finally:
                    await joiner.close()
                await asyncio.sleep(1.0)  # beyond pysfu's keyframe coalescing
            result.joins = len(result.from_subscribe_ms)
            result.median_from_subscribe_ms = statistics.median(
                result.from_subscribe_ms
            )
            result.max_from_subscribe_ms = max(result.from_subscribe_ms)
            result.median_from_connected_ms = statistics.median(
                result.from_connected_ms
            )
        finally:
            result.problems += problems_of([publisher, steady])
            await close_all([steady, publisher])
    return result


@dataclass
class MemoryResult:
    mode: str
    steps: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    mb_per_subscriber: float | None = None
    error: str | None = None
    problems: list[str] = field(default_factory=list)


def slope(points: list[tuple[float, float]]) -> float | None:
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return covariance / sum((x - mean_x) ** 2 for x, _ in points)


async def memory_case(
    mode: str, media: Media, args: argparse.Namespace
) -> MemoryResult:
    result = MemoryResult(mode)
    steps = [n for n in args.memory if mode != "relay" or n <= args.relay_max]
    members: list[Member] = []
    async with running(mode, max(steps) + 1) as (server, directory):
        publisher = Member(directory, ROOM, "pub", "host", media, [])
        try:
            await join_all([publisher], args.timeout)
            for target in steps:
                new = [
                    Member(directory, ROOM, f"sub{i}", "participant", None, ["pub"])
                    for i in range(len(members), target)
                ]
                await join_all(new, args.timeout)
                members += new
                await asyncio.sleep(args.settle)
                result.steps.append(target)
                result.rss_mb.append(server.rss() / 2**20)
            result.mb_per_subscriber = slope(
                list(zip(result.steps, result.rss_mb, strict=True))
            )
        finally:
            result.problems = problems_of([publisher, *members])
            await close_all([*members, publisher])
    return result


# ----------------------------------------------------------------------------
# running the suite


async def attempt(label: str, case: Awaitable[Any], empty: Any) -> Any:
    """Run one case; a failure becomes ``empty`` with its ``error`` set."""
    log(f"{label}: running")
    try:
        result = await case
    except Exception as exc:
        result = empty
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    log(f"{label}: {result.error or 'done'}")
    for problem in result.problems:
        log(f"  {problem}")
    return result


async def run_suite(args: argparse.Namespace, document: dict[str, Any]) -> None:
    log("encoding the clip")
    media = encode_media(args.clip_seconds, args.bitrate)
    document["clip"] = {
        "video_kbps": media.video.bitrate / 1000,
        "video_frames": len(media.video.frames),
        "keyframe_bytes": len(media.video.frames[0]),
        "audio_kbps": media.audio.bitrate / 1000,
    }
    results: dict[str, list[Any]] = document["results"]
    if "fanout" in args.parts:
        for n in args.fanout:
            for repeat in range(args.repeat if n == args.repeat_at else 1):
                for mode in args.modes:
                    if mode == "relay" and n > args.relay_max:
                        continue
                    results["fanout"].append(
                        await attempt(
                            f"fanout {mode} x {n}"
                            + (f" #{repeat + 1}" if repeat else ""),
                            fanout_case(mode, n, repeat, media, args),
                            FanoutResult(mode, n, repeat),
                        )
                    )
    if "rooms" in args.parts:
        for rooms in args.rooms:
            for mode in args.modes:
                if mode == "relay" and rooms > args.relay_max_rooms:
                    continue
                results["rooms"].append(
                    await attempt(
                        f"rooms {mode} x {rooms}",
                        rooms_case(mode, rooms, media, args),
                        RoomsResult(mode, rooms),
                    )
                )
    for part, case_fn, empty_type in (
        ("latejoin", latejoin_case, LateJoinResult),
        ("memory", memory_case, MemoryResult),
    ):
        if part in args.parts:
            for mode in args.modes:
                results[part].append(
                    await attempt(
                        f"{part} {mode}",
                        case_fn(mode, media, args),
                        empty_type(mode),
                    )
                )


# ----------------------------------------------------------------------------
# output


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "-"
    return format(value, spec)


def table(rows: list[Any], columns: list[tuple[str, str, str]]) -> str:
    header = "  ".join(title for title, _, _ in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.error:
            cells = [
                fmt(getattr(row, attr), spec).rjust(len(title))
                for title, attr, spec in columns[:2]
            ]
            lines.append("  ".join(cells) + "  " + row.error)
            continue
        line = "  ".join(
            fmt(getattr(row, attr), spec).rjust(len(title))
            for title, attr, spec in columns
        )
        if row.problems:  # connections lost during the case: not a clean figure
            line += f"  ! {len(row.problems)} problem(s), see the log"
        lines.append(line)
    return "\n".join(lines)


FANOUT_COLUMNS = [
    ("mode ", "mode", ""),
    ("subs", "subscribers", "d"),
    ("fwd pkt/s", "forwarded_pps", ".0f"),
    ("srv µs/pkt", "server_cpu_us_per_packet", ".1f"),
    ("srv CPU%", "server_cpu_percent", ".1f"),
    ("idle CPU%", "idle_cpu_percent", ".1f"),
    ("wake/in", "wakeups_per_inbound_packet", ".2f"),
    ("loss %", "loss_percent", ".2f"),
    ("deliv %", "delivered_percent", ".1f"),
    ("peak RSS MB", "server_peak_rss_mb", ".1f"),
    ("lat p50 ms", "latency_p50_ms", ".2f"),
    ("p95 ms", "latency_p95_ms", ".2f"),
    ("p99 ms", "latency_p99_ms", ".2f"),
    ("cli CPU%", "client_cpu_percent", ".0f"),
]
ROOMS_COLUMNS = [
    ("mode ", "mode", ""),
    ("rooms", "rooms", "d"),
    ("fwd pkt/s", "forwarded_pps", ".0f"),
    ("pkt per CPU-s", "packets_per_cpu_second", ".0f"),
    ("srv µs/pkt", "server_cpu_us_per_packet", ".1f"),
    ("srv CPU%", "server_cpu_percent", ".1f"),
    ("wake/in", "wakeups_per_inbound_packet", ".2f"),
    ("loss %", "loss_percent", ".2f"),
    ("deliv %", "delivered_percent", ".1f"),
    ("peak RSS MB", "server_peak_rss_mb", ".1f"),
    ("cli CPU%", "client_cpu_percent", ".0f"),
]
LATEJOIN_COLUMNS = [
    ("mode ", "mode", ""),
    ("joins", "joins", "d"),
    ("subscribe->key ms (median)", "median_from_subscribe_ms", ".0f"),
    ("(max)", "max_from_subscribe_ms", ".0f"),
    ("connected->key ms (median)", "median_from_connected_ms", ".0f"),
]


def first_of(rows: list[Any], **match: Any) -> Any:
    """The first error-free row matching ``match`` (repeat 0 for fan-out)."""
    for row in rows:
        if (
            not row.error
            and getattr(row, "repeat", 0) == 0
            and all(getattr(row, k) == v for k, v in match.items())
        ):
            return row
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def compute_ratios(results: dict[str, list[Any]]) -> dict[str, list[dict[str, Any]]]:
    """pysfu/janus and relay/pysfu for every case that has the modes."""
    out: dict[str, list[dict[str, Any]]] = {
        "fanout": [],
        "rooms": [],
        "latejoin": [],
        "memory": [],
    }

    def pair(metric: str, rows: list[Any], **match: Any) -> dict[str, Any]:
        values = {
            mode: getattr(first_of(rows, mode=mode, **match), metric, None)
            for mode in MODES
        }
        return {
            **match,
            "metric": metric,
            **{mode: values[mode] for mode in MODES},
            "pysfu/janus": ratio(values["pysfu"], values["janus"]),
            "mux/janus": ratio(values["mux"], values["janus"]),
            "mux/pysfu": ratio(values["mux"], values["pysfu"]),
            "relay/pysfu": ratio(values["relay"], values["pysfu"]),
        }

    fan = results["fanout"]
    for n in sorted({r.subscribers for r in fan}):
        out["fanout"].append(pair("server_cpu_us_per_packet", fan, subscribers=n))
        out["fanout"].append(pair("latency_p50_ms", fan, subscribers=n))
        out["fanout"].append(pair("latency_p99_ms", fan, subscribers=n))
    for r in sorted({r.rooms for r in results["rooms"]}):
        out["rooms"].append(pair("server_cpu_us_per_packet", results["rooms"], rooms=r))
    if results["latejoin"]:
        out["latejoin"].append(pair("median_from_subscribe_ms", results["latejoin"]))
    if results["memory"]:
        out["memory"].append(pair("mb_per_subscriber", results["memory"]))
    return out


def marginal(results: list[FanoutResult]) -> dict[str, float | None]:
    """Server CPU per extra forwarded packet: slope of CPU µs/s over packets/s."""
    return {
        mode: slope(
            [
                (r.forwarded_pps, r.server_cpu_percent * 1e4)
                for r in results
                if r.mode == mode and not r.error and r.repeat == 0
            ]
        )
        for mode in MODES
    }


def spread(results: list[FanoutResult], n: int) -> dict[str, dict[str, float]]:
    """Min/median/max µs per packet over the repeats of the N-subscriber case."""
    out = {}
    for mode in MODES:
        values = [
            r.server_cpu_us_per_packet
            for r in results
            if r.mode == mode and r.subscribers == n and not r.error
        ]
        if len(values) > 1:
            out[mode] = {
                "runs": len(values),
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
                "spread_percent": 100
                * (max(values) - min(values))
                / statistics.median(values),
            }
    return out


def report(document: dict[str, Any]) -> str:
    results = document["results"]
    out: list[str] = []
    if results["fanout"]:
        out += [
            "",
            "FAN-OUT: 1 publisher -> N subscribers",
            table(results["fanout"], FANOUT_COLUMNS),
        ]
        costs = document["marginal_us_per_packet"]
        out.append(
            "marginal server CPU per extra forwarded packet: "
            + ", ".join(f"{m} {fmt(v, '.1f')} µs" for m, v in costs.items() if v)
        )
        for mode, s in document["noise"].items():
            out.append(
                f"noise, {s['runs']} runs at N={document['settings']['repeat_at']}: "
                f"{mode} {s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f} µs "
                f"(min/median/max, spread {s['spread_percent']:.0f} %)"
            )
    if results["rooms"]:
        out += [
            "",
            "ROOMS: host + participant, both publishing audio+video",
            table(results["rooms"], ROOMS_COLUMNS),
        ]
    if results["latejoin"]:
        out += [
            "",
            "LATE JOINER: subscribe -> first complete keyframe",
            table(results["latejoin"], LATEJOIN_COLUMNS),
        ]
    if results["memory"]:
        out += ["", "MEMORY: server RSS (MB) as subscribers are added"]
        for row in results["memory"]:
            if row.error:
                out.append(f"{row.mode:<5}  {row.error}")
                continue
            steps = "  ".join(
                f"{n}: {mb:.1f}" for n, mb in zip(row.steps, row.rss_mb, strict=True)
            )
            per = fmt(row.mb_per_subscriber, ".2f")
            out.append(f"{row.mode:<5}  {steps}   slope {per} MB/subscriber")
    out += [
        "",
        "RATIOS (pysfu/janus < 1: pysfu needs less; relay/pysfu > 1: relay needs more)",
    ]
    for part, rows in document["ratios"].items():
        for row in rows:
            case = ", ".join(
                f"{k}={v}" for k, v in row.items() if k in ("subscribers", "rooms")
            )
            out.append(
                f"{part:<8} {case:<15} {row['metric']:<26} "
                f"pysfu/janus {fmt(row['pysfu/janus'], '6.2f')}   "
                f"relay/pysfu {fmt(row['relay/pysfu'], '7.1f')}"
            )
    return "\n".join(out)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    janus_version = None
    if shutil.which("janus"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            janus_version = subprocess.run(
                ["janus", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.splitlines()[0]
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": version("aiortc"),
        "av": version("av"),
        "pysfu": version("pysfu"),
        "janus": janus_version,
        "netns": bool(os.environ.get(NETNS_ENV)),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "load_average_at_start": os.getloadavg(),
    }


def int_list(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def name_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = set(names) - set(choices)
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(sorted(unknown))} "
                f"(choose from {', '.join(choices)})"
            )
        return names

    return parse


QUICK = {
    "fanout": [1, 4],
    "rooms": [1, 2],
    "memory": [0, 4, 8],
    "seconds": 4.0,
    "warmup": 2.0,
    "latejoins": 3,
    "repeat": 1,
    "settle": 1.5,
    "idle": 2.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, short cases")
    parser.add_argument("--parts", type=name_list(PARTS), default=list(PARTS))
    parser.add_argument("--modes", type=name_list(MODES), default=list(MODES))
    parser.add_argument(
        "--fanout",
        type=int_list,
        default=[1, 4, 8, 16, 32],
        help="subscriber counts of the fan-out part",
    )
    parser.add_argument("--rooms", type=int_list, default=[1, 5, 10, 20])
    parser.add_argument(
        "--memory",
        type=int_list,
        default=[0, 8, 16, 32],
        help="subscriber counts at which RSS is read",
    )
    parser.add_argument("--latejoins", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the pysfu and relay servers",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the load generator on the first CPU and every server on the "
        "others (default when there are two or more), so that neither takes the "
        "other's core and its caches",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=5.0,
        help="seconds of server CPU measured per fan-out case with the "
        "publisher paused (0: skip)",
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds before each RSS reading"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the fan-out case at --repeat-at (noise)",
    )
    parser.add_argument("--repeat-at", type=int, default=16)
    parser.add_argument(
        "--relay-max",
        type=int,
        default=16,
        help="largest subscriber count run for relay (it saturates)",
    )
    parser.add_argument("--relay-max-rooms", type=int, default=5)
    parser.add_argument(
        "--bitrate", type=int, default=1_000_000, help="clip video bit/s"
    )
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per join/wait")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--no-netns", action="store_true", help="run in the current network namespace"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="scheduling priority of the load generator and the servers it starts "
        "(default -10 as root: on a shared machine other work must not starve "
        "the measurement)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        given = set(
            a.split("=")[0].lstrip("-").replace("-", "_")
            for a in (argv or sys.argv[1:])
        )
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    if not args.no_netns:
        reexec_in_netns(
            NETNS_SETUP,
            "the suite runs inside `unshare --net` and needs root, unshare(1) and "
            "ip(8); use --no-netns to run in the current namespace (Janus will then "
            "need a non-loopback interface)",
        )
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # children inherit it
    Server.loop = args.loop
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2:
        os.sched_setaffinity(0, cpus[:1])
        Server.cpus = set(cpus[1:])
    if "janus" in args.modes and (problem := janus_available()):
        log(f"skipping janus: {problem}")
        args.modes = [m for m in args.modes if m != "janus"]
    document: dict[str, Any] = {
        "benchmark": "suite",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": " ".join(["python", "-m", "benchmarks.run", *sys.argv[1:]]),
        "machine": machine(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "results": {part: [] for part in PARTS},
    }
    started = time.monotonic()
    interrupted = False
    try:
        asyncio.run(run_suite(args, document))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; every server process was stopped")
    results = document["results"]
    document["duration_s"] = round(time.monotonic() - started, 1)
    document["marginal_us_per_packet"] = marginal(results["fanout"])
    document["noise"] = spread(results["fanout"], args.repeat_at)
    document["ratios"] = compute_ratios(results)
    print(report(document))
    document["results"] = {
        part: [asdict(row) for row in rows] for part, rows in results.items()
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    log(f"wrote {args.json} ({document['duration_s']:.0f} s)")
    sys.exit(130 if interrupted else 0)


if __name__ == "__main__":
    main()
