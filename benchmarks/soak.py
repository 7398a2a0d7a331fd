"""Soak benchmark: many join/leave and room create/close cycles, no growth allowed.

Everything runs in this one process over 127.0.0.1: a pysfu ``SFU`` and the
aiortc client peers of the test suite (``tests/peers.py``), joined through the
in-memory signalling adapter. Two scenarios:

- ``joinleave``: one room whose host stays (publishing audio and video); each
  cycle a participant joins, publishes audio and video, decodes a first frame
  of the host's video, gets its own video forwarded to the host, then sends
  ``Leave`` and closes its peer connection.
- ``rooms``: each cycle creates a room, a host and a participant join and
  decode a first frame of each other's video, the host leaves (which closes
  the room) and both clients close.

Every ``--every`` cycles the process's asyncio tasks, open file descriptors,
threads, live peer connections and pysfu objects and its RSS are recorded;
the end is compared with the sample taken after ``--warmup`` cycles.

    python -m benchmarks.soak --cycles 1000 --scenario both

See benchmarks/README.md for what exactly is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from pysfu import SFU, DownTrack, Forwarder, IceConfig, Participant, Room, SFUConfig
from pysfu.signalling import Leave
from tests.peers import Peer

from .harness.processes import NETNS_ENV, reexec_in_netns

BENCH_DIR = Path(__file__).resolve().parent

DEFAULT_JSON = BENCH_DIR / "results" / "soak.json"
SCENARIOS = ("joinleave", "rooms")
LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))
PAGE = os.sysconf("SC_PAGE_SIZE")


class SoakPeer(Peer):
    """The test suite's client peer, bundling everything on one transport.

    aiortc's default bundle policy (``balanced``) mishandles a first offer with
    two m-lines of one kind (the server's offer to someone joining a room whose
    host already publishes): the second one stays on a transport that aiortc
    discards, so that client never sends its video (aiortc/aiortc#1414).
    ``max-bundle`` avoids it.
    """

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name, code)
        self.pc = RTCPeerConnection(
            RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.on("track", self._on_track)


# ----------------------------------------------------------------------------
# measuring


#: Objects counted in every sample (live instances after ``gc.collect()``).
COUNTED: dict[str, type] = {
    "pcs": RTCPeerConnection,
    "participants": Participant,
    "rooms": Room,
    "forwarders": Forwarder,
    "downtracks": DownTrack,
    "client_peers": Peer,
}

#: metric -> (table heading, growth from warm-up to end that still counts as flat)
METRICS: dict[str, tuple[str, float]] = {
    "tasks": ("tasks", 2),
    "fds": ("fds", 2),
    "threads": ("threads", 2),
    "pcs": ("pcs", 0),
    "participants": ("parts", 0),
    "rooms": ("rooms", 0),
    "forwarders": ("fwds", 0),
    "downtracks": ("dtrks", 0),
    "client_peers": ("clients", 0),
    "rss_mb": ("RSS MB", 0),  # judged by its slope instead, see RSS_MB_PER_100
    # objects the garbage collector tracks; packets in flight move it a little
    "gc_objects": ("objects", 500),
}
#: RSS may grow by at most this many MB per 100 cycles (least-squares slope
#: over the samples after warm-up) for the memory verdict to be "flat". One
#: participant kept alive with its closed peer connection costs about 1 MB.
RSS_MB_PER_100 = 1.0
#: The sample is taken this long after a cycle ends, so aiortc's background
#: closing tasks are done (they are, within a few ms, on loopback).
SETTLE_SECONDS = 0.25


def sample(cycle: int, started: float) -> dict[str, Any]:
    """One row: the process's resources and live objects right now."""
    gc.collect()
    counts = dict.fromkeys(COUNTED, 0)
    classes = tuple(COUNTED.values())
    objects = gc.get_objects()
    for obj in objects:
        if isinstance(obj, classes):
            for name, cls in COUNTED.items():
                if isinstance(obj, cls):
                    counts[name] += 1
    gc_objects = len(objects)
    del objects
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * PAGE
    return {
        "cycle": cycle,
        "elapsed_s": round(time.monotonic() - started, 1),
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        **counts,
        "rss_mb": round(rss / 2**20, 2),
        "gc_objects": gc_objects,
    }


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def forwarded(room: Room, subscriber_id: str, track_id: str) -> bool:
    """Whether the SFU forwarded at least one RTP packet of a track to someone."""
    member = room.members.get(subscriber_id)
    subscription = member.subscriptions.get(track_id) if member else None
    return bool(subscription and subscription.downtrack.stats.packets_sent)


# ----------------------------------------------------------------------------
# scenarios


@dataclass
class ScenarioResult:
    """One scenario: samples over time, cycle timings and the verdicts."""

    scenario: str
    cycles: int = 0
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: seconds from join to media flowing both ways, then to everything closed
    connect_s: dict[str, float] = field(default_factory=dict)
    close_s: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    after_teardown: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


class Scenario:
    """Runs cycles, samples every ``every`` cycles, always closes what it made."""

    name = ""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sfu = SFU(SFUConfig(ice=LOOPBACK))
        self.result = ScenarioResult(self.name, cycles=args.cycles)
        self._live: list[Peer] = []
        self._connect: list[float] = []
        self._close: list[float] = []

    async def setup(self) -> None:
        """Whatever stays for the whole run."""

    async def cycle(self, index: int) -> tuple[float, float]:
        """One cycle; returns (connect seconds, close seconds)."""
        raise NotImplementedError

    async def teardown(self) -> None:
        for peer in self._live:
            with contextlib.suppress(Exception):
                await peer.close()
        self._live.clear()
        await self.sfu.close()

    async def recover(self) -> None:
        """After a failed cycle: close what the cycle left open."""
        for peer in list(self._live):
            with contextlib.suppress(Exception):
                await self.close_peers(peer)

    def peer(self, name: str, code: int) -> SoakPeer:
        peer = SoakPeer(name, code)
        self._live.append(peer)
        return peer

    async def close_peers(self, *peers: Peer) -> None:
        for peer in peers:
            await peer.close()
            self._live.remove(peer)

    async def run(self) -> ScenarioResult:
        args, result = self.args, self.result
        started = time.monotonic()
        try:
            await self.setup()
            await asyncio.sleep(SETTLE_SECONDS)
            result.samples.append(sample(0, started))
            log(self.name, format_row(result.samples[-1]))
            consecutive_failures = 0
            for index in range(1, args.cycles + 1):
                try:
                    connect, close = await self.cycle(index)
                except Exception as exc:
                    result.failures.append(f"cycle {index}: {exc!r}")
                    log(self.name, f"cycle {index} failed: {exc!r}")
                    await self.recover()
                    consecutive_failures += 1
                    if consecutive_failures >= args.max_failures:
                        raise RuntimeError(
                            f"{consecutive_failures} cycles failed in a row"
                        ) from exc
                else:
                    consecutive_failures = 0
                    result.completed += 1
                    self._connect.append(connect)
                    self._close.append(close)
                if index % args.every == 0 or index == args.cycles:
                    await asyncio.sleep(SETTLE_SECONDS)
                    result.samples.append(sample(index, started))
                    log(self.name, format_row(result.samples[-1]))
        except Exception as exc:
            result.error = repr(exc)
            log(self.name, f"stopped: {exc!r}")
        finally:
            result.seconds = round(time.monotonic() - started, 1)
            await self.teardown()
            await asyncio.sleep(SETTLE_SECONDS)
            result.after_teardown = sample(-1, started)
            result.connect_s = summarize_times(self._connect)
            result.close_s = summarize_times(self._close)
            result.verdicts = verdicts(result.samples, args.warmup)
        return result


class JoinLeave(Scenario):
    """A host stays; participants join, get media both ways, and leave."""

    name = "joinleave"

    async def setup(self) -> None:
        self.room = self.sfu.create_room("soak")
        self.host = await self.peer("host", 1).join(self.room, "host")
        await until(
            lambda: "host/video" in self.room.members["host"].publications,
            self.args.timeout,
            "the host's video",
        )

    async def cycle(self, index: int) -> tuple[float, float]:
        timeout = self.args.timeout
        began = time.monotonic()
        guest = await self.peer(f"p{index}", 2).join(self.room)
        await guest.wait_video_from(self.host, frames=1, timeout=timeout)
        for kind in ("audio", "video"):
            await until(
                lambda kind=kind: forwarded(self.room, "host", f"{guest.name}/{kind}"),
                timeout,
                f"{guest.name}'s {kind} forwarded to the host",
            )
        connected = time.monotonic()
        assert guest.client is not None
        await guest.client.send(Leave())
        await self.close_peers(guest)
        if guest.name in self.room.members:
            raise RuntimeError(f"{guest.name} is still a member after leaving")
        # The host's client keeps every message it gets; it is the harness,
        # not the SFU, so its history must not count as growth.
        self.host.messages.clear()
        return connected - began, time.monotonic() - connected

    async def recover(self) -> None:
        for peer in list(self._live):
            if peer is not self.host:
                with contextlib.suppress(Exception):
                    await self.close_peers(peer)
        for member in list(self.room.members.values()):
            if member.id != "host":
                await member.leave("soak cycle failed")

    async def teardown(self) -> None:
        await super().teardown()
        # so that the sample after teardown sees them gone
        self.__dict__.pop("host", None)
        self.__dict__.pop("room", None)


class Rooms(Scenario):
    """Each cycle: a room is created, two peers meet in it, the host leaves."""

    name = "rooms"

    async def cycle(self, index: int) -> tuple[float, float]:
        timeout = self.args.timeout
        began = time.monotonic()
        room = self.sfu.create_room(f"soak-{index}")
        host = await self.peer("host", 1).join(room, "host")
        guest = await self.peer("guest", 2).join(room)
        await guest.wait_video_from(host, frames=1, timeout=timeout)
        await host.wait_video_from(guest, frames=1, timeout=timeout)
        connected = time.monotonic()
        assert host.client is not None
        await host.client.send(Leave())  # the host leaving closes the room
        await self.close_peers(guest, host)
        if not room.closed or room.id in self.sfu.rooms:
            raise RuntimeError(f"room {room.id} is still open")
        return connected - began, time.monotonic() - connected

    async def recover(self) -> None:
        await super().recover()
        await self.sfu.close()


SCENARIO_CLASSES: dict[str, type[Scenario]] = {"joinleave": JoinLeave, "rooms": Rooms}


# ----------------------------------------------------------------------------
# judging and output


def summarize_times(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 3),
        "p50": round(ordered[len(ordered) // 2], 3),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
        "max": round(ordered[-1], 3),
    }


def slope_per_100(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value against cycle, per 100 cycles."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    variance = sum((x - mean_x) ** 2 for x, _ in points)
    return 100 * covariance / variance


def baseline_index(samples: list[dict[str, Any]], warmup: int) -> int:
    """The first sample taken at or after ``warmup`` cycles (else the first)."""
    return next((i for i, s in enumerate(samples) if s["cycle"] >= warmup and i), 0)


def verdicts(samples: list[dict[str, Any]], warmup: int) -> dict[str, dict[str, Any]]:
    """Per metric: warm-up value, end value, growth, growth per 100, flat or not."""
    if len(samples) < 2:
        return {}
    first = baseline_index(samples, warmup)
    start, end = samples[first], samples[-1]
    cycles = max(end["cycle"] - start["cycle"], 1)
    judged = {}
    for metric, (_, slack) in METRICS.items():
        growth = end[metric] - start[metric]
        per_100 = growth * 100 / cycles
        verdict: dict[str, Any] = {
            "start": start[metric],
            "end": end[metric],
            "peak": max(s[metric] for s in samples[first:]),
            "growth": round(growth, 2),
            "growth_per_100_cycles": round(per_100, 3),
        }
        if metric == "rss_mb":
            slope = slope_per_100([(s["cycle"], s[metric]) for s in samples[first:]])
            verdict["slope_per_100_cycles"] = round(slope, 3)
            verdict["flat"] = slope <= RSS_MB_PER_100
        else:
            verdict["flat"] = growth <= slack
        judged[metric] = verdict
    return judged


def format_row(row: dict[str, Any]) -> str:
    cells = [f"{row['cycle']:>6}", f"{row['elapsed_s']:>8.1f}"]
    cells += [str(row[m]).rjust(len(title)) for m, (title, _) in METRICS.items()]
    return "  ".join(cells)


def format_header() -> str:
    header = "  ".join(
        ["cycle ".rjust(6), "elapsed s"] + [title for title, _ in METRICS.values()]
    )
    return header + "\n" + "-" * len(header)


def format_result(result: ScenarioResult, warmup: int) -> str:
    lines = [
        f"== {result.scenario}: {result.completed}/{result.cycles} cycles in "
        f"{result.seconds:.0f} s"
        + (f", {len(result.failures)} failed" if result.failures else "")
        + (f", stopped: {result.error}" if result.error else ""),
        format_header(),
    ]
    lines += [format_row(s) for s in result.samples]
    if result.after_teardown:
        lines.append(format_row(result.after_teardown) + "   (after teardown)")
    for label, times in (("connect", result.connect_s), ("close", result.close_s)):
        if times:
            lines.append(
                f"{label} s/cycle: mean {times['mean']:.3f}  p50 {times['p50']:.3f}"
                f"  p95 {times['p95']:.3f}  max {times['max']:.3f}"
            )
    if result.verdicts:
        start = result.samples[baseline_index(result.samples, warmup)]["cycle"]
        end = result.samples[-1]["cycle"]
        lines.append(f"growth from cycle {start} to {end}:")
    for metric, v in result.verdicts.items():
        word = "flat" if v["flat"] else "GROWS"
        extra = ""
        if "slope_per_100_cycles" in v:
            extra = f", slope {v['slope_per_100_cycles']:+.3f}/100 cycles"
        lines.append(
            f"  {word:<5} {metric:<13} {v['start']} -> {v['end']} "
            f"(peak {v['peak']}): {v['growth']:+g}, "
            f"{v['growth_per_100_cycles']:+.3f} per 100 cycles{extra}"
        )
    for failure in result.failures[:10]:
        lines.append(f"  failed {failure}")
    return "\n".join(lines)


def write_json(
    path: Path, args: argparse.Namespace, results: list[ScenarioResult]
) -> None:
    document = {
        "benchmark": "soak",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "aiortc": version("aiortc"),
            "pysfu": version("pysfu"),
            "netns": bool(os.environ.get(NETNS_ENV)),
        },
        "settings": {
            "cycles": args.cycles,
            "scenarios": list(args.scenarios),
            "every": args.every,
            "warmup": args.warmup,
            "timeout": args.timeout,
            "settle_seconds": SETTLE_SECONDS,
            "flat_slack": {m: slack for m, (_, slack) in METRICS.items()},
            "rss_mb_per_100_cycles": RSS_MB_PER_100,
        },
        "results": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def log(scenario: str, message: str) -> None:
    print(f"[soak {scenario}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# command line


async def run_all(args: argparse.Namespace, results: list[ScenarioResult]) -> None:
    for name in args.scenarios:
        log(name, f"{args.cycles} cycles, a sample every {args.every}")
        log(name, format_header().splitlines()[0])
        scenario = SCENARIO_CLASSES[name](args)
        try:
            results.append(await scenario.run())
        finally:
            if not results or results[-1].scenario != name:
                results.append(scenario.result)  # interrupted: keep what we have


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Join/leave and room create/close cycles: tasks, fds, peer "
        "connections and memory must not grow."
    )
    parser.add_argument("--cycles", type=int, default=1000, help="per scenario")
    parser.add_argument(
        "--scenario",
        choices=(*SCENARIOS, "both"),
        default="both",
        help="joinleave, rooms or both (default)",
    )
    parser.add_argument("--every", type=int, default=50, help="sample interval")
    parser.add_argument(
        "--warmup",
        type=int,
        default=50,
        help="cycles before the baseline sample the end is compared with",
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="per wait inside a cycle, s"
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=5,
        help="stop a scenario after this many failed cycles in a row",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="output file")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run inside `unshare --net` with only loopback (needs root)",
    )
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.every < 1:
        parser.error("--cycles and --every must be positive")
    args.scenarios = SCENARIOS if args.scenario == "both" else (args.scenario,)
    return args


def main() -> None:
    args = parse_args()
    if args.netns:
        reexec_in_netns()
    results: list[ScenarioResult] = []
    interrupted = False
    try:
        asyncio.run(run_all(args, results))
    except KeyboardInterrupt:
        interrupted = True
        log("all", "interrupted; everything started was closed")
    for result in results:
        print(format_result(result, args.warmup) + "\n")
    if results:
        write_json(args.json, args, results)
        log("all", f"wrote {args.json}")
    failed = any(
        r.error or not all(v["flat"] for v in r.verdicts.values()) for r in results
    )
    sys.exit(130 if interrupted else 1 if failed else 0)


if __name__ == "__main__":
    main()
