"""Cluster benchmark: the packaged app as 1, 2 and 3 nodes sharing one Redis.

Per case (a node count N) this process starts a ``redis-server`` and N app
processes (``examples/ws_sfu.py --redis URL --node-url URL``, each a node)
on 127.0.0.1, creates R two-person rooms, room ``i`` on node ``i % N`` (the
app creates a room on the node asked, as a round-robin front door would
spread them), and joins a host and a guest into every room *through node 0*:
joins for rooms of the other nodes are answered ``307`` to the owner. The
clients are the test suite's aiortc peers (``tests.peers``: they encode a
moving pattern and a tone, and decode what they receive), in this process.

Reported per case:

- **placement**: rooms owned per node (from each node's ``/metrics``);
- **join latency**: the HTTP join (``POST /api/rooms/<id>/join`` through
  node 0, redirect included; a host re-sends its join to the ``Location``
  itself, as browsers drop ``Authorization`` on a cross-origin redirect),
  median and p95, for local and redirected joins apart; and the time from
  a room's first join until both peers decoded video from each other;
- **forwarding**: RTP packets forwarded per second by all nodes over
  ``--seconds`` (from ``pysfu_packets_forwarded_total``), and each node's CPU
  time (user + system, from ``/proc``, its worker processes included) per
  forwarded packet;
- **failover** (N >= 2): node N-1 is killed with ``SIGKILL``; the clients of
  its rooms rejoin through node 0 (the host with its ``host_rejoin``
  credential) every 0.25 s, as the packaged page does; the time from the
  kill until each room admits its host again (re-homed) and until both its
  peers decode video again.

This machine has 2 cores shared by every node, Redis and the clients, so
throughput cannot grow with the nodes here: the numbers show placement, the
cost of a redirect and the failover time, not scaling.

    python -m benchmarks.cluster --quick          # 3 rooms, 5 s windows
    python -m benchmarks.cluster --nodes 1,2,3 --rooms 6 --netns

Writes ``benchmarks/results/cluster.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from tests.example_server import HOST_KEY, RunningExample, example_server, free_port
from tests.peers import Peer
from tests.redis_server import RedisServer
from tests.ws_client import WsClient

from .harness.processes import cpu_seconds, reexec_in_netns
from .stall import browser_like_consent

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "cluster.json"
METRICS_TOKEN = "bench"
FORWARDED = re.compile(r'^pysfu_packets_forwarded_total\{kind="\w+"\} (\S+)$', re.M)
OWNED = re.compile(r"^pysfu_cluster_rooms_owned\{[^}]*\} (\S+)$", re.M)
LIVE = re.compile(r"^pysfu_cluster_nodes_live (\S+)$", re.M)
#: Seconds any one step (a join, media starting) may take before the case fails.
STEP_TIMEOUT = 60.0


@dataclass
class Call:
    """One room and its two peers."""

    room: str
    node: int
    join_url: str
    host: Peer | None = None
    guest: Peer | None = None
    host_rejoin: str | None = None


@dataclass
class CaseResult:
    nodes: int
    rooms: int
    ttl: float
    rooms_per_node: list[int] = field(default_factory=list)
    join_local_ms: list[float] = field(default_factory=list)
    join_redirected_ms: list[float] = field(default_factory=list)
    media_ms: list[float] = field(default_factory=list)
    forwarded_pps: float = 0.0
    forwarded_pps_per_node: list[float] = field(default_factory=list)
    node_cpu_percent: list[float] = field(default_factory=list)
    node_us_per_packet: list[float | None] = field(default_factory=list)
    #: CPU of this process (every client: encoding, decoding) in the window.
    client_cpu_percent: float = 0.0
    #: Seconds from the SIGKILL until each re-homed room admitted its host.
    rehomed_s: list[float] = field(default_factory=list)
    #: Seconds from the SIGKILL until both peers of each room decoded video.
    media_back_s: list[float] = field(default_factory=list)
    #: Rooms of the surviving nodes, and how many of them kept decoding video
    #: both ways across the failover.
    survivors: int = 0
    survivors_flowing: int = 0
    error: str | None = None


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def api_of(join_url: str) -> str:
    return join_url.replace("/r/", "/api/rooms/") + "/join"


async def post_join(
    http: aiohttp.ClientSession, api: str, role: str, bearer: str | None
) -> tuple[int, dict[str, Any], bool]:
    """Status, body, and whether it was redirected, of one join (following
    a redirect by hand with the bearer token, as a host's page does)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    body = {"role": role}
    async with http.post(
        api, json=body, headers=headers, allow_redirects=False
    ) as response:
        if response.status != 307:
            return response.status, await response.json(), False
        location = response.headers["Location"]
    async with http.post(
        location, json=body, headers=headers, allow_redirects=False
    ) as response:
        return response.status, await response.json(), True


async def scrape(http: aiohttp.ClientSession, base: str) -> str:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(f"{base}/metrics", headers=headers) as response:
        return await response.text()


def forwarded(metrics: str) -> float:
    return sum(float(value) for value in FORWARDED.findall(metrics))


async def wait_for(what: str, check: Any, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def frames_both_ways(call: Call) -> tuple[int, int]:
    """Video frames the host decoded from the guest, and the guest from the host."""
    assert call.host is not None and call.guest is not None
    counts = []
    for peer, other in ((call.host, call.guest), (call.guest, call.host)):
        track = peer.track_from(other.name, "video")
        counts.append(track.frames if track is not None else 0)
    return counts[0], counts[1]


class Case:
    """One node count: its processes, calls and measurements."""

    def __init__(self, nodes: int, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.result = CaseResult(nodes, args.rooms, args.ttl)
        self.bases: list[RunningExample] = []
        self.calls: list[Call] = []
        self.peers: list[Peer] = []
        self.code = 0

    async def run(self, http: aiohttp.ClientSession) -> None:
        redis = RedisServer(free_port(), self.workdir)
        redis.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for index in range(self.result.nodes):
                    port = free_port()
                    self.bases.append(
                        await stack.enter_async_context(
                            example_server(
                                f"--redis={redis.url}",
                                f"--node-url=http://127.0.0.1:{port}",
                                f"--metrics-token={METRICS_TOKEN}",
                                f"--node-ttl={self.args.ttl}",
                                "--max-participants=1",
                                *self.args.server_option,
                                port=port,
                                log=self.workdir / f"node-{index}.log",
                            )
                        )
                    )
                try:
                    await self.measure(http)
                finally:
                    for peer in self.peers:
                        with contextlib.suppress(Exception):
                            await peer.close()
        finally:
            redis.stop()

    async def measure(self, http: aiohttp.ClientSession) -> None:
        nodes = self.result.nodes

        async def all_live() -> bool:
            found = LIVE.search(await scrape(http, self.bases[0]))
            return found is not None and float(found.group(1)) == nodes

        await wait_for("every node live", all_live)
        for i in range(self.args.rooms):
            node = i % nodes
            async with http.post(
                f"{self.bases[node]}/api/rooms",
                json={"slug": "ascii"},
                headers={"Authorization": f"Bearer {HOST_KEY}"},
            ) as response:
                room = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"room creation: {response.status} {room}")
            self.calls.append(Call(room["room"], node, room["join_url"]))
        for call in self.calls:
            await self.join_call(http, call, HOST_KEY)
        self.result.rooms_per_node = [
            int(float(m.group(1))) if (m := OWNED.search(await scrape(http, b))) else 0
            for b in self.bases
        ]
        await self.window(http)
        if nodes >= 2:
            await self.failover(http)

    def entry_api(self, call: Call) -> str:
        """The join endpoint of ``call``'s room at node 0, the entry."""
        owner = self.bases[call.node]
        return api_of(call.join_url.replace(owner, self.bases[0]))

    async def join_call(
        self, http: aiohttp.ClientSession, call: Call, host_bearer: str
    ) -> None:
        """Join the room's host and guest through node 0; time each join and
        the call until both decode video."""
        began = time.monotonic()
        peers = []
        for role, bearer in (("host", host_bearer), ("participant", None)):
            start = time.monotonic()
            status, grant, redirected = await post_join(
                http, self.entry_api(call), role, bearer
            )
            if status != 200:
                raise RuntimeError(f"{role} join of {call.room}: {status} {grant}")
            ms = 1000 * (time.monotonic() - start)
            (
                self.result.join_redirected_ms
                if redirected
                else self.result.join_local_ms
            ).append(ms)
            if role == "host":
                call.host_rejoin = grant.get("host_rejoin")
            peers.append(await self.connect(http, grant))
        call.host, call.guest = peers
        await self.media(call)
        self.result.media_ms.append(1000 * (time.monotonic() - began))

    async def media(self, call: Call) -> None:
        assert call.host is not None and call.guest is not None
        await call.guest.wait_video_from(call.host, timeout=STEP_TIMEOUT)
        await call.host.wait_video_from(call.guest, timeout=STEP_TIMEOUT)

    async def window(self, http: aiohttp.ClientSession) -> None:
        # a node is its process and its worker processes (--workers)
        nodes = [psutil.Process(base.process.pid) for base in self.bases]
        processes = [[node, *node.children(recursive=True)] for node in nodes]
        me = psutil.Process()
        await asyncio.sleep(self.args.warmup)
        before = [forwarded(await scrape(http, b)) for b in self.bases]
        cpu_before = [sum(map(cpu_seconds, p)) for p in processes]
        client_before = cpu_seconds(me)
        start = time.monotonic()
        await asyncio.sleep(self.args.seconds)
        after = [forwarded(await scrape(http, b)) for b in self.bases]
        cpu_after = [sum(map(cpu_seconds, p)) for p in processes]
        seconds = time.monotonic() - start
        self.result.client_cpu_percent = (
            100 * (cpu_seconds(me) - client_before) / seconds
        )
        packets = [b - a for a, b in zip(before, after, strict=True)]
        used = [b - a for a, b in zip(cpu_before, cpu_after, strict=True)]
        self.result.forwarded_pps = sum(packets) / seconds
        self.result.forwarded_pps_per_node = [p / seconds for p in packets]
        self.result.node_cpu_percent = [100 * u / seconds for u in used]
        self.result.node_us_per_packet = [
            1e6 * u / p if p else None for u, p in zip(used, packets, strict=True)
        ]

    async def failover(self, http: aiohttp.ClientSession) -> None:
        victim = self.result.nodes - 1
        orphans = [c for c in self.calls if c.node == victim]
        survivors = [c for c in self.calls if c.node != victim]
        before = [frames_both_ways(c) for c in survivors]
        killed = time.monotonic()
        os.kill(self.bases[victim].process.pid, signal.SIGKILL)
        # their clients are lost with the node (closed only now: a host that
        # leaves first would close its room, cleanly)
        for call in orphans:
            for peer in (call.host, call.guest):
                if peer is not None:
                    await peer.close()
                    self.peers.remove(peer)
        # their clients rejoin at once, each room's pair on its own
        await asyncio.gather(*(self.rejoin(http, call, killed) for call in orphans))
        after = [frames_both_ways(c) for c in survivors]
        self.result.survivors = len(survivors)
        self.result.survivors_flowing = sum(
            1
            for (h0, g0), (h1, g1) in zip(before, after, strict=True)
            if h1 > h0 and g1 > g0
        )

    async def rejoin(
        self, http: aiohttp.ClientSession, call: Call, killed: float
    ) -> None:
        """The host posts its join through node 0 every 0.25 s until a live
        node re-homed the room and admits it; then the guest joins."""
        while True:
            try:
                status, grant, _ = await post_join(
                    http, self.entry_api(call), "host", call.host_rejoin
                )
            except aiohttp.ClientError:
                status, grant = 0, {}  # redirected to the dead node, still listed
            if status == 200:
                break
            if time.monotonic() - killed > STEP_TIMEOUT:
                raise TimeoutError(f"room {call.room} not re-homed: {status} {grant}")
            await asyncio.sleep(0.25)
        self.result.rehomed_s.append(time.monotonic() - killed)
        host = await self.connect(http, grant)
        status, grant, _ = await post_join(
            http, self.entry_api(call), "participant", None
        )
        if status != 200:
            raise RuntimeError(f"guest rejoin of {call.room}: {status} {grant}")
        call.host, call.guest = host, await self.connect(http, grant)
        await self.media(call)
        self.result.media_back_s.append(time.monotonic() - killed)

    async def connect(self, http: aiohttp.ClientSession, grant: dict[str, Any]) -> Peer:
        """An aiortc peer on ``grant``'s WebSocket (at the room's node)."""
        self.code += 1
        peer = Peer(grant["participant_id"], self.code)
        browser_like_consent(peer)
        self.peers.append(peer)
        return peer.attach(await WsClient.connect(http, grant))


# ----------------------------------------------------------------------------
# the driver

COLUMNS: tuple[tuple[str, str], ...] = (
    ("nodes", "nodes"),
    ("rooms per node", "placement"),
    ("join local ms (med/p95)", "join_local"),
    ("join redirected ms (med/p95)", "join_redirected"),
    ("join to media ms (med/p95)", "media"),
    ("fwd pkt/s", "fwd"),
    ("CPU % per node", "cpu"),
    ("µs/pkt per node", "us"),
    ("clients CPU %", "client"),
    ("re-homed s", "rehomed"),
    ("media back s", "back"),
    ("other rooms flowing", "survivors"),
)


def med_p95(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} / {percentile(values, 0.95):.0f}"


def cells(result: CaseResult) -> dict[str, str]:
    def each(values: list[Any], spec: str) -> str:
        return " / ".join("-" if v is None else format(v, spec) for v in values)

    return {
        "nodes": str(result.nodes),
        "placement": each(result.rooms_per_node, "d"),
        "join_local": med_p95(result.join_local_ms),
        "join_redirected": med_p95(result.join_redirected_ms),
        "media": med_p95(result.media_ms),
        "fwd": f"{result.forwarded_pps:.0f}",
        "cpu": each(result.node_cpu_percent, ".0f"),
        "us": each(result.node_us_per_packet, ".0f"),
        "client": f"{result.client_cpu_percent:.0f}",
        "rehomed": each(sorted(result.rehomed_s), ".1f") or "-",
        "back": each(sorted(result.media_back_s), ".1f") or "-",
        "survivors": (
            f"{result.survivors_flowing} of {result.survivors}"
            if result.nodes >= 2
            else "-"
        ),
    }


def format_table(results: list[CaseResult]) -> str:
    rows = [
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for result in results:
        if result.error:
            rows.append(f"| {result.nodes} | {result.error} |")
            continue
        row = cells(result)
        rows.append("| " + " | ".join(row[key] for _, key in COLUMNS) + " |")
    return "\n".join(rows)


async def run_all(args: argparse.Namespace) -> list[CaseResult]:
    results = []
    async with aiohttp.ClientSession() as http:
        for _ in range(args.repeat):
            for nodes in args.nodes:
                log(f"{nodes} node(s) x {args.rooms} rooms: running")
                with tempfile.TemporaryDirectory(prefix="pysfu-cluster-") as tmp:
                    case = Case(nodes, args, Path(tmp))
                    try:
                        await case.run(http)
                    except Exception as exc:
                        case.result.error = repr(exc)
                        logs = sorted(Path(tmp).glob("node-*.log"))
                        for path in logs:
                            tail = path.read_text(errors="replace")[-1500:]
                            log(f"{path.name}: {tail}")
                results.append(case.result)
                log(f"  {case.result.error or cells(case.result)}")
    return results


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nodes", type=lambda t: [int(n) for n in t.split(",")], default=[1, 2, 3]
    )
    parser.add_argument("--rooms", type=int, default=6, help="two-person rooms")
    parser.add_argument("--seconds", type=float, default=10.0, help="window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--ttl", type=float, default=5.0, help="--node-ttl")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every case")
    parser.add_argument(
        "--quick", action="store_true", help="3 rooms, 5 s windows, a 3 s TTL"
    )
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="passed on to every node, e.g. --server-option=--workers=2",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--netns", action="store_true", help="in `unshare --net`")
    args = parser.parse_args(argv)
    if args.quick:
        args.rooms, args.seconds, args.warmup, args.ttl = 3, 5.0, 1.0, 3.0
    return args


def main() -> None:
    args = parse_args()
    if args.netns:
        reexec_in_netns()
    results = asyncio.run(run_all(args))
    print(format_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                "rooms": args.rooms,
                "seconds": args.seconds,
                "ttl": args.ttl,
                "server_options": args.server_option,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
