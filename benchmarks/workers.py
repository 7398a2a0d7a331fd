"""Rooms over worker processes: total forwarded packets/s with 1 vs N workers.

Each case runs three kinds of process on 127.0.0.1:

- the server (``workers.py --serve``): a :class:`pysfu.workers.WorkerPool` with
  ``--workers`` worker processes and R rooms (placed by the pool, so spread
  evenly), clients admitted with ``pool.join`` through the newline-JSON
  signalling of ``linejson.py``, ``deliver_json`` for what they send;
- the load generator (``workers.py --load``), in its own process: R rooms of a
  host and a participant, each publishing VP8 video and Opus audio and
  receiving the other's: the benchmark suite's clients (``clients.Member``
  over the same signalling). Publishers send a clip encoded once at start-up
  (``clip.py``: ``av.Packet``s paced in real time, so the generator spends
  nothing on encoding) and receivers only count RTP packets per SSRC
  (decrypted and parsed, never decoded);
- this driver, which starts both per case and reads the CPU time of the
  server's processes (the pool's process and every worker) from ``/proc``
  through psutil, over the window the load generator measures.

No assertions, no wall-clock guesses: CPU is user+system time of each process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .harness.linejson import HOST, LINE_LIMIT
from .harness.processes import Child, reexec_in_netns
from .harness.processes import cpu_seconds as process_cpu_seconds

#: This suite, run again as the server (``--serve``) and the load (``--load``).
MODULE = "benchmarks.workers"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "workers.json"
#: A pool (or a load generator) with many peers takes a while to close.
STOP_TIMEOUT = 20.0

# ----------------------------------------------------------------------------
# the server


async def serve(workers: int, rooms: int, watch_stdin: bool) -> None:
    from pysfu import IceConfig, SFUConfig
    from pysfu.signalling import Outbox
    from pysfu.workers import WorkerPool

    from .harness.server import Joined, ParticipantServer, wait_for_stop

    class PoolServer(ParticipantServer):
        def __init__(self, pool: WorkerPool) -> None:
            super().__init__()
            self.pool = pool

        async def join(self, hello: dict[str, Any], outbox: Outbox) -> Joined:
            return await self.pool.join(
                str(hello.get("room")), hello["id"], hello["role"], outbox
            )

        async def shutdown_media(self) -> None:
            await self.pool.close()

    # A generous ICE consent limit (60 s instead of 10 s): the load generator
    # runs dozens of peers in one loop on a shared machine, and a peer whose
    # consent responses are late must not be dropped; this measures forwarding.
    ice = IceConfig(host_addresses=(HOST,), consent_failures=30)
    pool = WorkerPool(workers, SFUConfig(ice=ice))
    await pool.start()
    for index in range(rooms):
        await pool.create_room(f"room-{index}", max_participants=1)
    handler = PoolServer(pool)
    server = await asyncio.start_server(handler.handle, HOST, 0, limit=LINE_LIMIT)
    port = server.sockets[0].getsockname()[1]
    placement = [pool.room_worker(f"room-{i}") for i in range(rooms)]
    print(
        json.dumps({"port": port, "workers": pool.pids, "placement": placement}),
        flush=True,
    )
    try:
        await wait_for_stop(watch_stdin)
    finally:
        server.close()
        await handler.close()


# ----------------------------------------------------------------------------
# the load generator


async def load(port: int, rooms: int, seconds: float, warmup: float) -> None:
    """Run the load; print one JSON line at the window's start and one at its end."""
    from .harness.clients import Directory, Member, close_all, snapshot
    from .harness.clip import encode_media
    from .harness.counting import LoadWindow

    media = encode_media(4.0, 1_000_000)
    directory = Directory("pysfu", port=port)
    members = [
        Member(directory, f"room-{i}", f"{role}-{i}", role, media, [f"{other}-{i}"])
        for i in range(rooms)
        for role, other in (("host", "participant"), ("participant", "host"))
    ]
    lags: list[float] = []

    async def watch_lag() -> None:
        """How late the loop wakes up: above ~0.5 s, ICE consent checks fail."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.1)
            lags.append(time.monotonic() - start - 0.1)

    async def connect(member: Member) -> None:
        await member.join(90)
        await member.receiving(90)

    lag_task = asyncio.create_task(watch_lag())
    try:
        failed: set[str] = set()
        for batch in range(0, len(members), 8):  # not all DTLS handshakes at once
            chunk = members[batch : batch + 8]
            # on a saturated machine a connection may fail to set up: the
            # case goes on with the rooms that work, and says how many
            outcomes = await asyncio.gather(
                *(connect(m) for m in chunk), return_exceptions=True
            )
            failed |= {
                m.room
                for m, outcome in zip(chunk, outcomes, strict=True)
                if isinstance(outcome, BaseException)
            }
        up = [m for m in members if m.room not in failed]
        await asyncio.sleep(warmup)
        before = await snapshot(up, up)
        print(json.dumps({"window": "start"}), flush=True)
        del lags[:]
        await asyncio.sleep(seconds)
        window = LoadWindow.between(before, await snapshot(up, up))
        lags.sort()
        problems = [p for m in members for p in m.problems()]
        print(
            json.dumps(
                {
                    "window": "end",
                    "seconds": window.seconds,
                    "client_cpu_seconds": window.client_cpu_seconds,
                    "sent": sum(window.sent_packets.values()),
                    "received": window.received_packets,
                    "expected": window.expected_packets,
                    "problems": problems[:10],
                    "rooms_up": rooms - len(failed),
                    # rooms with a peer that failed after it was ready (e.g.
                    # aiortc gave up on ICE consent: 6 checks unanswered)
                    "rooms_lost": len({m.room for m in up if m.problems()}),
                    "loop_lag_p99_ms": 1000 * lags[int(len(lags) * 0.99)]
                    if lags
                    else 0,
                    "loop_lag_max_ms": 1000 * lags[-1] if lags else 0,
                }
            ),
            flush=True,
        )
    finally:
        lag_task.cancel()
        await close_all(members)


# ----------------------------------------------------------------------------
# the driver


@dataclass
class CaseResult:
    workers: int
    rooms: int
    #: Cores each worker may use (``--worker-cpu``), or None: unlimited.
    worker_cpu_budget: float | None = None
    forwarded_pps: float = 0.0
    sent_pps: float = 0.0
    loss_percent: float = 0.0
    server_cpu_percent: float = 0.0
    worker_cpu_percent: list[float] = field(default_factory=list)
    pool_process_cpu_percent: float = 0.0
    server_us_per_packet: float = 0.0
    client_cpu_percent: float = 0.0
    machine_cpu_percent: float = 0.0
    #: How late the load generator's event loop woke up in the window.
    loadgen_lag_p99_ms: float = 0.0
    loadgen_lag_max_ms: float = 0.0
    #: UDP datagrams the kernel dropped (receive buffer full) in the window,
    #: at the server's sockets and at the load generator's.
    server_udp_drops: int = 0
    loadgen_udp_drops: int = 0
    #: Rooms whose two peers both connected (the others are left out).
    rooms_up: int = 0
    #: Rooms where a peer's connection failed during the case.
    rooms_lost: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)


def udp_drops(pids: list[int]) -> int:
    """Datagrams dropped (receive buffer full) at the UDP sockets of ``pids``.

    From the ``drops`` column of ``/proc/net/udp``, for the sockets whose
    inodes the processes hold: it tells whether the server or the load
    generator fell behind.
    """
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    drops += int(fields[-1])
    return drops


class CpuBudget:
    """One cgroup (v1 ``cpu`` controller) per worker, capping it at ``cores``.

    Emulates a machine with one smaller core per worker: each worker gets
    the same budget whatever the number of workers, so a budget below what
    the load needs shows what more workers add, on a machine whose real
    cores are shared with the load generator.
    """

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, cores: float) -> None:
        self.cores = cores
        self.groups: list[Path] = []

    def confine(self, pids: list[int]) -> None:
        for index, pid in enumerate(pids):
            group = self.ROOT / f"pysfu-bench-{os.getpid()}-{index}"
            group.mkdir()
            self.groups.append(group)
            period = 100_000
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(period * self.cores)))
            (group / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        for group in self.groups:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (self.ROOT / "cgroup.procs").write_text(pid)
                group.rmdir()
        self.groups.clear()


def cpu_seconds(processes: list[psutil.Process]) -> list[float]:
    out = []
    for process in processes:
        try:
            out.append(process_cpu_seconds(process))
        except psutil.Error:
            out.append(float("nan"))
    return out


async def run_case(workers: int, rooms: int, args: argparse.Namespace) -> CaseResult:
    server = Child(
        MODULE,
        "--serve",
        "--workers",
        str(workers),
        "--rooms",
        str(rooms),
        stop_timeout=STOP_TIMEOUT,
    )
    loadgen: Child | None = None
    result = CaseResult(workers, rooms, worker_cpu_budget=args.worker_cpu)
    budget = CpuBudget(args.worker_cpu) if args.worker_cpu else None
    try:
        await server.start()
        hello = await server.line(60)
        if budget is not None:
            budget.confine(hello["workers"])
        processes = [psutil.Process(server.pid)] + [
            psutil.Process(pid) for pid in hello["workers"]
        ]
        loadgen = Child(
            MODULE,
            "--load",
            "--port",
            str(hello["port"]),
            "--rooms",
            str(rooms),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            stop_timeout=STOP_TIMEOUT,
        )
        await loadgen.start()
        await loadgen.line(180)  # window start
        server_pids = [p.pid for p in processes]
        loadgen_pids = [loadgen.pid]
        before, machine_before = cpu_seconds(processes), psutil.cpu_times()
        drops = udp_drops(server_pids), udp_drops(loadgen_pids)
        end = await loadgen.line(args.seconds + 60)
        after, machine_after = cpu_seconds(processes), psutil.cpu_times()
        result.server_udp_drops = udp_drops(server_pids) - drops[0]
        result.loadgen_udp_drops = udp_drops(loadgen_pids) - drops[1]
        seconds = end["seconds"]
        used = [b - a for a, b in zip(before, after, strict=True)]
        total = sum(used)
        result.forwarded_pps = end["received"] / seconds
        result.sent_pps = end["sent"] / seconds
        result.loss_percent = 100 * (1 - end["received"] / max(end["expected"], 1))
        result.server_cpu_percent = 100 * total / seconds
        result.pool_process_cpu_percent = 100 * used[0] / seconds
        result.worker_cpu_percent = [100 * u / seconds for u in used[1:]]
        result.server_us_per_packet = 1e6 * total / max(end["received"], 1)
        result.client_cpu_percent = 100 * end["client_cpu_seconds"] / seconds
        busy = sum(machine_after) - sum(machine_before)
        idle = (machine_after.idle - machine_before.idle) + (
            machine_after.iowait - machine_before.iowait
        )
        result.machine_cpu_percent = 100 * (busy - idle) / max(busy, 1e-9)
        result.problems = end["problems"]
        result.rooms_up = end["rooms_up"]
        result.rooms_lost = end["rooms_lost"]
        result.loadgen_lag_p99_ms = end["loop_lag_p99_ms"]
        result.loadgen_lag_max_ms = end["loop_lag_max_ms"]
    except Exception as exc:
        result.error = repr(exc)
    finally:
        if loadgen is not None:
            await loadgen.stop()
        await server.stop()
        if budget is not None:
            budget.release()
    return result


async def run_all(args: argparse.Namespace, results: list[CaseResult]) -> None:
    for _ in range(args.repeat):
        for rooms in args.rooms:
            for workers in args.workers:
                log(f"{workers} worker(s) x {rooms} rooms: running")
                result = await run_case(workers, rooms, args)
                results.append(result)
                log(f"  {result.error or format_row(result)}")


COLUMNS = (
    ("workers", "workers", "d"),
    ("rooms", "rooms", "d"),
    ("up", "rooms_up", "d"),
    ("lost", "rooms_lost", "d"),
    ("fwd pkt/s", "forwarded_pps", ".0f"),
    ("loss %", "loss_percent", ".2f"),
    ("SFU CPU%", "server_cpu_percent", ".1f"),
    ("µs/pkt", "server_us_per_packet", ".1f"),
    ("pool CPU%", "pool_process_cpu_percent", ".1f"),
    ("loadgen CPU%", "client_cpu_percent", ".1f"),
    ("machine busy%", "machine_cpu_percent", ".1f"),
    ("lag p99 ms", "loadgen_lag_p99_ms", ".0f"),
    ("drops srv", "server_udp_drops", "d"),
    ("drops gen", "loadgen_udp_drops", "d"),
)


def format_row(result: CaseResult) -> str:
    cells = [
        f"{getattr(result, attr):{spec}}".rjust(len(title))
        for title, attr, spec in COLUMNS
    ]
    per_worker = "/".join(f"{c:.0f}" for c in result.worker_cpu_percent)
    return "  ".join(cells) + f"  {per_worker}"


def format_table(results: list[CaseResult]) -> str:
    header = "  ".join(title for title, _, _ in COLUMNS) + "  CPU% per worker"
    lines = [header, "-" * len(header)]
    for result in results:
        if result.error:
            lines.append(f"{result.workers:>7}  {result.rooms:>5}  {result.error}")
        else:
            lines.append(format_row(result))
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[workers] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(n) for n in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=numbers, default=[1, 2])
    parser.add_argument("--rooms", type=numbers, default=[4, 8, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every case")
    parser.add_argument(
        "--worker-cpu",
        type=float,
        default=None,
        help="cap each worker at this many cores (a cgroup each; needs root)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--netns", action="store_true", help="in `unshare --net`")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    if os.environ.get("PYSFU_BENCH_LOG"):  # e.g. INFO: why participants left
        logging.getLogger("pysfu").setLevel(os.environ["PYSFU_BENCH_LOG"])
        logging.getLogger("aiortc").setLevel(os.environ["PYSFU_BENCH_LOG"])
        logging.getLogger("aioice").setLevel(os.environ["PYSFU_BENCH_LOG"])
    if args.serve:
        asyncio.run(serve(args.workers[0], args.rooms[0], watch_stdin=True))
        return
    if args.load:
        asyncio.run(load(args.port, args.rooms[0], args.seconds, args.warmup))
        return
    if args.netns:
        reexec_in_netns()
    results: list[CaseResult] = []
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_all(args, results))
    print(format_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                },
                "seconds": args.seconds,
                "warmup": args.warmup,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
