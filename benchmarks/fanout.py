"""Fan-out benchmark: 1 publisher -> N subscribers, pysfu against aiortc's MediaRelay.

For every mode and subscriber count a fresh server process is started
(``server.py``), the load generator in this process connects one publisher and
N subscribers (``loadgen.py``), and after a warm-up the server process's CPU
time (user + system, all threads) is read over the measurement window and
divided by the RTP packets the subscribers received in it.

    python benchmarks/fanout.py --subscribers 1,4,8,16 --seconds 10

See benchmarks/README.md for what exactly is measured.
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
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
from loadgen import LoadGenerator, LoadWindow

BENCH_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = BENCH_DIR / "server.py"
DEFAULT_JSON = BENCH_DIR / "results" / "fanout.json"
MODES = ("pysfu", "relay")
#: Set inside the network namespace so ``--netns`` does not re-exec again.
NETNS_ENV = "PYSFU_BENCH_IN_NETNS"


@dataclass
class CaseResult:
    """One mode x subscriber-count measurement over the window (rates per second).

    - ``forwarded_pps``: RTP packets received by all subscribers together.
    - ``server_cpu_us_per_packet``: server user+system CPU / those packets.
    - ``loss_percent``: from sequence-number gaps in what subscribers received.
    - ``delivered_percent``: packets received / (packets published * N); falls
      below 100 when a relay server cannot encode every frame for everyone.
    - ``server_peak_rss_mb``: the server's peak RSS over its whole life.
    - ``*_video_kbps``: video the publisher sent (RTP payload) and each
      subscriber received on average (whole RTP packets).
    """

    mode: str
    subscribers: int
    seconds: float = 0.0
    forwarded_pps: float = 0.0
    server_cpu_us_per_packet: float = 0.0
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    loss_percent: float = 0.0
    delivered_percent: float = 0.0
    server_peak_rss_mb: float = 0.0
    publisher_pps: float = 0.0
    publisher_video_kbps: float = 0.0
    subscriber_video_kbps: float = 0.0
    error: str | None = None
    problems: list[str] = field(default_factory=list)


class ServerProcess:
    """``server.py`` in its own process (and session, so Ctrl-C reaches us only)."""

    def __init__(
        self, mode: str, subscribers: int, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.mode = mode
        self.subscribers = subscribers
        self.extra_args = extra_args
        self.proc: asyncio.subprocess.Process | None = None
        self._ps: psutil.Process | None = None

    async def start(self, timeout: float = 30.0) -> int:
        """Start the server and return the port it listens on."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER_SCRIPT),
            "--mode",
            self.mode,
            "--port",
            "0",
            "--subscribers",
            str(self.subscribers),
            "--exit-on-stdin-eof",
            *self.extra_args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._ps = psutil.Process(self.proc.pid)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.mode} server exited before listening")
        return int(json.loads(line)["port"])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all threads)."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    def peak_rss(self) -> int:
        """The server's peak resident set size in bytes (``VmHWM`` on Linux)."""
        assert self._ps is not None
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self._ps.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return int(self._ps.memory_info().rss)

    async def stop(self) -> None:
        """Close its stdin (it exits on EOF), then escalate to SIGTERM and SIGKILL."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for escalate in (proc.terminate, proc.kill):
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
                return
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    escalate()
        await proc.wait()


def summarize(
    mode: str, subscribers: int, window: LoadWindow, cpu: float, rss: int
) -> CaseResult:
    """Turn one window's counters and the server's CPU time into a result."""
    seconds = window.seconds
    packets = window.received_packets
    if not packets:
        raise RuntimeError("the subscribers received nothing in the window")
    expected = max(window.expected_packets, 1)
    published = max(sum(window.sent_packets.values()), 1)
    published_video = window.sent_octets.get("video", 0)
    received_video = window.received_video_octets / subscribers
    return CaseResult(
        mode=mode,
        subscribers=subscribers,
        seconds=round(seconds, 2),
        forwarded_pps=packets / seconds,
        server_cpu_us_per_packet=cpu * 1e6 / packets,
        server_cpu_percent=100 * cpu / seconds,
        client_cpu_percent=100 * window.client_cpu_seconds / seconds,
        loss_percent=100 * (1 - packets / expected),
        delivered_percent=100 * packets / (published * subscribers),
        server_peak_rss_mb=rss / 2**20,
        publisher_pps=published / seconds,
        publisher_video_kbps=published_video * 8 / seconds / 1000,
        subscriber_video_kbps=received_video * 8 / seconds / 1000,
    )


async def run_case(mode: str, subscribers: int, args: argparse.Namespace) -> CaseResult:
    """Start a server, load it, measure one window, tear everything down."""
    server = ServerProcess(mode, subscribers)
    load: LoadGenerator | None = None
    try:
        port = await server.start()
        load = LoadGenerator(port, subscribers, args.bitrate)
        await load.start(timeout=args.connect_timeout)
        await asyncio.sleep(args.warmup)
        cpu_before, before = server.cpu_seconds(), await load.snapshot()
        await asyncio.sleep(args.seconds)
        cpu_after, after = server.cpu_seconds(), await load.snapshot()
        if not server.alive:
            raise RuntimeError("the server exited during the measurement")
        result = summarize(
            mode,
            subscribers,
            LoadWindow.between(before, after),
            cpu_after - cpu_before,
            server.peak_rss(),
        )
        result.problems = load.problems()
        return result
    finally:
        if load is not None:
            await load.close()
        await server.stop()


async def run_all(args: argparse.Namespace, results: list[CaseResult]) -> None:
    for subscribers in args.subscribers:
        for mode in args.modes:
            log(f"{mode} x {subscribers}: running")
            try:
                result = await run_case(mode, subscribers, args)
            except Exception as exc:
                result = CaseResult(mode, subscribers, error=f"{exc!r}")
            results.append(result)
            log(f"{mode} x {subscribers}: {result.error or 'done'}")
            for problem in result.problems:
                log(f"  {problem}")


# ----------------------------------------------------------------------------
# output


#: (heading, CaseResult attribute, format spec); cells are as wide as headings.
COLUMNS = (
    ("mode ", "mode", ""),
    ("subs", "subscribers", "d"),
    ("fwd pkt/s", "forwarded_pps", ".0f"),
    ("srv µs/pkt", "server_cpu_us_per_packet", ".1f"),
    ("srv CPU%", "server_cpu_percent", ".1f"),
    ("loss %", "loss_percent", ".2f"),
    ("deliv %", "delivered_percent", ".1f"),
    ("srv peak RSS MB", "server_peak_rss_mb", ".1f"),
    ("pub kbit/s", "publisher_video_kbps", ".0f"),
    ("sub kbit/s", "subscriber_video_kbps", ".0f"),
    ("cli CPU%", "client_cpu_percent", ".1f"),
)


def format_table(results: list[CaseResult]) -> str:
    """One row per case; ``sub kbit/s`` is the video each subscriber received."""
    header = "  ".join(title for title, _, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for result in results:
        if result.error:
            lines.append(f"{result.mode:<5}  {result.subscribers:>4}  {result.error}")
            continue
        cells = [f"{result.mode:<5}"] + [
            format(getattr(result, attr), spec).rjust(len(title))
            for title, attr, spec in COLUMNS[1:]
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def ratios(results: list[CaseResult]) -> list[dict[str, Any]]:
    """relay µs / pysfu µs per forwarded packet, for each subscriber count."""
    found = {(r.mode, r.subscribers): r for r in results if not r.error}
    rows = []
    for subscribers in sorted({r.subscribers for r in results}):
        pysfu, relay = (
            found.get(("pysfu", subscribers)),
            found.get(("relay", subscribers)),
        )
        if pysfu and relay and pysfu.server_cpu_us_per_packet > 0:
            rows.append(
                {
                    "subscribers": subscribers,
                    "pysfu_us": pysfu.server_cpu_us_per_packet,
                    "relay_us": relay.server_cpu_us_per_packet,
                    "ratio": relay.server_cpu_us_per_packet
                    / pysfu.server_cpu_us_per_packet,
                }
            )
    return rows


def marginal_costs(results: list[CaseResult]) -> dict[str, float]:
    """Server CPU per *extra* forwarded packet, per mode.

    The least-squares slope of server CPU (µs per second) against forwarded
    packets per second over the subscriber counts run. Unlike the per-case
    average it leaves out what does not grow with N (receiving the publisher,
    timers), so it is the cost of one more subscriber's packet.
    """
    slopes = {}
    for mode in MODES:
        points = [
            (r.forwarded_pps, r.server_cpu_percent * 1e4)
            for r in results
            if r.mode == mode and not r.error
        ]
        if len({x for x, _ in points}) < 2:
            continue
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
        variance = sum((x - mean_x) ** 2 for x, _ in points)
        slopes[mode] = covariance / variance
    return slopes


def format_marginal(slopes: dict[str, float]) -> str:
    if not slopes:
        return ""
    costs = ", ".join(f"{mode} {us:.1f} µs" for mode, us in slopes.items())
    return f"marginal server CPU per extra forwarded packet (slope over N): {costs}"


def format_ratios(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"N={row['subscribers']:<3} relay/pysfu = {row['ratio']:6.1f}x"
        f"  ({row['relay_us']:.1f} µs vs {row['pysfu_us']:.1f} µs per forwarded packet)"
        for row in rows
    )


def write_json(path: Path, args: argparse.Namespace, results: list[CaseResult]) -> None:
    document = {
        "benchmark": "fanout",
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
            "modes": list(args.modes),
            "subscribers": list(args.subscribers),
            "seconds": args.seconds,
            "warmup": args.warmup,
            "bitrate": args.bitrate,
        },
        "results": [asdict(r) for r in results],
        "ratios": ratios(results),
        "marginal_us_per_packet": marginal_costs(results),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def log(message: str) -> None:
    print(f"[fanout] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# command line


def reexec_in_netns() -> None:
    """Run this command again inside a fresh network namespace with only ``lo``."""
    if os.environ.get(NETNS_ENV):
        return
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        sys.exit("--netns needs root, unshare(1) and ip(8)")
    os.execvpe(
        "unshare",
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            'ip link set lo up && exec "$@"',
            "sh",
            sys.executable,
            *sys.argv,
        ],
        {**os.environ, NETNS_ENV: "1"},
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="1 publisher -> N subscribers: server CPU per forwarded packet, "
        "pysfu against aiortc MediaRelay."
    )
    parser.add_argument(
        "--subscribers",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 4, 8, 16],
        help="comma-separated subscriber counts (default 1,4,8,16)",
    )
    parser.add_argument(
        "--modes",
        type=lambda s: [m.strip() for m in s.split(",")],
        default=list(MODES),
        help="comma-separated, from pysfu,relay (default both)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before it")
    parser.add_argument(
        "--bitrate", type=int, default=1_000_000, help="video target, bit/s"
    )
    parser.add_argument("--connect-timeout", type=float, default=45.0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="output file")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run inside `unshare --net` with only loopback (needs root)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    if args.netns:
        reexec_in_netns()
    results: list[CaseResult] = []
    interrupted = False
    try:
        asyncio.run(run_all(args, results))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; every server process was stopped")
    if results:
        print(format_table(results))
        summary = [
            format_ratios(ratios(results)),
            format_marginal(marginal_costs(results)),
        ]
        print("\n" + "\n".join(line for line in summary if line))
        write_json(args.json, args, results)
        log(f"wrote {args.json}")
    sys.exit(130 if interrupted else 0)


if __name__ == "__main__":
    main()
