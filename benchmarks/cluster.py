"""Cluster benchmark: the packaged app as 1, 2 and 3 nodes sharing one Redis.

Per case (a node count N) this process starts a ``redis-server`` and N app
processes (``examples/ws_sfu.py --redis URL --node-url URL``, each a node)
on 127.0.0.1, creates R two-person rooms *through node 0* (the app places
each on the least loaded live node, which the answer's links name), and
joins a host and a guest into every room *through node 0*: joins for rooms
of the other nodes are answered ``307`` to the owner. The
clients are the test suite's aiortc peers (``tests.peers``: they encode a
moving pattern and a tone, and decode what they receive), in this process.

Reported per case:

- **placement**: rooms owned per node (from each node's ``/metrics``);
- **Redis traffic**: commands sent (``MONITOR``: a script call or each
  command of a pipeline counts once), commands run (``INFO stats``: a
  script's own too) and bytes in and out of the ``redis-server`` per room
  creation, per host join at the room's node (with its ticket) and per
  guest join through another node (redirect included),
  measured over ``--probe`` more rooms after the media window, with the
  nodes' background traffic (heartbeats, totals) measured just before and
  subtracted;
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
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis.asyncio as aioredis

from tests.example_server import HOST_KEY, RunningExample, example_server, free_port
from tests.peers import CODE_BITS, Peer
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
    #: Redis traffic per operation: [commands sent, commands run (a script's
    #: own included), bytes in, bytes out].
    redis_per_create: list[float] = field(default_factory=list)
    redis_per_join_local: list[float] = field(default_factory=list)
    redis_per_join_redirected: list[float] = field(default_factory=list)
    #: The nodes' background Redis traffic, subtracted: the same, per second.
    redis_background_per_s: list[float] = field(default_factory=list)
    #: HTTP round trips of a join through a node that does not own the room,
    #: beyond the one a join at the owner takes (the 307).
    join_extra_round_trips: list[int] = field(default_factory=list)
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
        #: the last 127.0.0.x a probe's joins came from
        self.source = 1

    async def run(self, http: aiohttp.ClientSession) -> None:
        redis = RedisServer(free_port(), self.workdir)
        redis.start()
        self.redis = RedisCounters(redis, self.workdir)
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
            await self.redis.close()
            redis.stop()

    async def measure(self, http: aiohttp.ClientSession) -> None:
        nodes = self.result.nodes

        async def all_live() -> bool:
            found = LIVE.search(await scrape(http, self.bases[0]))
            return found is not None and float(found.group(1)) == nodes

        await wait_for("every node live", all_live)
        for _ in range(self.args.rooms):
            room = await self.create(http)
            self.calls.append(Call(room["room"], self.owner(room), room["join_url"]))
        for call in self.calls:
            await self.join_call(http, call, HOST_KEY)
        self.result.rooms_per_node = [
            int(float(m.group(1))) if (m := OWNED.search(await scrape(http, b))) else 0
            for b in self.bases
        ]
        await self.window(http)
        await self.redis_traffic(http)
        if nodes >= 2:
            await self.failover(http)

    async def create(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """A new room, created through node 0 (placed where the app chose)."""
        async with http.post(
            f"{self.bases[0]}/api/rooms",
            json={"slug": "ascii"},
            headers={"Authorization": f"Bearer {HOST_KEY}"},
        ) as response:
            room: dict[str, Any] = await response.json()
            if response.status != 201:
                raise RuntimeError(f"room creation: {response.status} {room}")
        return room

    def owner(self, room: dict[str, Any]) -> int:
        """The index of the node a create answer's links name."""
        return next(
            i for i, b in enumerate(self.bases) if room["join_url"].startswith(f"{b}/")
        )

    async def redis_traffic(self, http: aiohttp.ClientSession) -> None:
        """Redis commands and bytes per creation and per join (HTTP only:
        signalling and media never touch Redis), over ``--probe`` rooms."""
        probes = self.args.probe
        hops: list[int] = []
        # twice, on fresh rooms: MONITOR (commands sent) adds its own output
        # to the server's bytes, so INFO is read on a pass without it
        by_monitor = await self.probe_redis(http, probes, hops, monitor=True)
        by_info = await self.probe_redis(http, probes, hops, monitor=False)

        def merged(sent: list[float], info: list[float]) -> list[float]:
            return [sent[0], *info[1:]]

        background = merged(by_monitor[0], by_info[0])
        create, local, redirected = (
            merged(m, i) for m, i in zip(by_monitor[1], by_info[1], strict=True)
        )
        self.result.redis_background_per_s = background
        self.result.redis_per_create = create
        self.result.redis_per_join_local = local
        self.result.redis_per_join_redirected = redirected
        self.result.join_extra_round_trips = sorted(set(hops))

    async def probe_redis(
        self, http: aiohttp.ClientSession, probes: int, hops: list[int], monitor: bool
    ) -> tuple[list[float], list[list[float]]]:
        """One pass of :meth:`redis_traffic` over ``probes`` new rooms."""
        rooms: list[dict[str, Any]] = []
        # the joins from addresses of their own (127.0.0.2, ...): a node
        # admits at most 20 unconnected participants per client address
        async with contextlib.AsyncExitStack() as stack:
            hosts, guests = [
                await stack.enter_async_context(self.session_from_new_address())
                for _ in range(2)
            ]
            return await self._probe_redis(
                http, hosts, guests, probes, hops, monitor, rooms
            )

    def session_from_new_address(self) -> aiohttp.ClientSession:
        self.source += 1
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{self.source}", 0))
        return aiohttp.ClientSession(connector=connector)

    async def _probe_redis(
        self,
        http: aiohttp.ClientSession,
        hosts: aiohttp.ClientSession,
        guests: aiohttp.ClientSession,
        probes: int,
        hops: list[int],
        monitor: bool,
        rooms: list[dict[str, Any]],
    ) -> tuple[list[float], list[list[float]]]:

        async def create_all() -> None:
            for _ in range(probes):
                rooms.append(await self.create(http))

        async def hosts_at_their_node() -> None:
            for room in rooms:
                ticket = room["host_url"].split("#ticket=")[1]
                status, grant, redirected = await post_join(
                    hosts, api_of(room["join_url"]), "host", ticket
                )
                if status != 200 or redirected:
                    raise RuntimeError(f"probe host join: {status} {grant}")

        async def guests_elsewhere() -> None:
            for room in rooms:
                owner = self.owner(room)
                entry = self.bases[(owner + 1) % len(self.bases)]
                api = api_of(room["join_url"].replace(self.bases[owner], entry))
                async with guests.post(api, json={"role": "participant"}) as response:
                    if response.status != 200:
                        raise RuntimeError(f"probe guest join: {response.status}")
                    hops.append(len(response.history))

        return await measure_redis(
            self.redis,
            self.args.redis_idle,
            [
                (create_all, probes),
                (hosts_at_their_node, probes),
                (guests_elsewhere, probes),
            ],
            monitor,
        )

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
        # 1..15, in turn: the pattern carries 4 bits (peers 16, 17, ... drew
        # 0, 1, ...: the failover's rejoined peers waited in vain for codes
        # their partners could not draw)
        self.code = self.code % ((1 << CODE_BITS) - 1) + 1
        peer = Peer(grant["participant_id"], self.code)
        browser_like_consent(peer)
        self.peers.append(peer)
        return peer.attach(await WsClient.connect(http, grant))


class RedisCounters:
    """What the nodes ask of the ``redis-server``, per operation:

    - commands *sent* (each command of a pipeline and each script call counts
      once: Redis round trips at most), from ``MONITOR``, its script lines
      left out;
    - commands *run* (``INFO stats``: a script's own commands count too);
    - bytes in and out (``INFO stats``).

    Each less the nodes' background traffic (heartbeats, totals) at the rate
    measured while nobody asks them anything, and less this reader's own."""

    def __init__(self, server: RedisServer, workdir: Path) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(server.url)
        self.port = server.port
        self.log = workdir / "monitor.log"
        self.monitor: subprocess.Popen[bytes] | None = None
        #: wall-clock spans of the measured phases (MONITOR stamps in it)
        self.spans: list[tuple[float, float]] = []

    async def close(self) -> None:
        self.stop_monitor()
        await self.client.aclose()

    async def start_monitor(self) -> None:
        with self.log.open("wb") as output:
            self.monitor = subprocess.Popen(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "monitor"],
                stdout=output,
                stderr=subprocess.DEVNULL,
            )
        await asyncio.sleep(0.5)  # connected and monitoring

    def stop_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.terminate()
            self.monitor.wait(timeout=10)
            self.monitor = None

    async def snapshot(self) -> list[float]:
        stats = await self.client.info("stats")
        return [
            float(stats["total_commands_processed"]),
            float(stats["total_net_input_bytes"]),
            float(stats["total_net_output_bytes"]),
        ]

    async def span(self, work: Any) -> tuple[int, list[float]]:
        """Run ``work()``; the index of its span and its INFO increments
        (this reader's INFO taken out)."""
        before = await self.snapshot()
        again = await self.snapshot()
        start = time.time()
        await work()
        end = time.time()
        after = await self.snapshot()
        self.spans.append((start, end))
        # ``again - before`` is what one INFO adds: ``after - again`` holds
        # the work and one INFO
        return len(self.spans) - 1, [
            (a - g) - (g - b) for a, g, b in zip(after, again, before, strict=True)
        ]

    def sent(self) -> list[int]:
        """Commands clients sent in each span (MONITOR; INFO excluded)."""
        counts = [0] * len(self.spans)
        for line in self.log.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            if "lua]" in rest or '"INFO"' in rest or not stamp[:1].isdigit():
                continue
            at = float(stamp)
            for i, (start, end) in enumerate(self.spans):
                if start <= at <= end:
                    counts[i] += 1
        return counts


async def measure_redis(
    counters: RedisCounters,
    idle: float,
    phases: list[tuple[Any, int]],
    monitor: bool,
) -> tuple[list[float], list[list[float]]]:
    """The background per second, then [sent, run, bytes in, bytes out] per
    operation of each phase ``(work, operations)``; "sent" only with
    ``monitor`` (0 without), the others only without (MONITOR's output
    counts in the server's bytes)."""
    counters.spans.clear()
    if monitor:
        await counters.start_monitor()
    background_span, background = await counters.span(lambda: asyncio.sleep(idle))
    measured = [await counters.span(work) for work, _ in phases]
    counters.stop_monitor()
    sent = counters.sent() if monitor else [0] * len(counters.spans)
    start, end = counters.spans[background_span]
    rate = [x / (end - start) for x in (sent[background_span], *background)]
    results = []
    for (index, grown), (_, operations) in zip(measured, phases, strict=True):
        start, end = counters.spans[index]
        totals = [float(sent[index]), *grown]
        results.append(
            [
                round((total - r * (end - start)) / operations, 1)
                for total, r in zip(totals, rate, strict=True)
            ]
        )
    return [round(r, 1) for r in rate], results


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
    ("Redis cmds sent per create / join / join via other", "redis_cmds"),
    ("Redis B in+out per create / join / join via other", "redis_bytes"),
    ("extra round trips via other", "hops"),
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
        "redis_cmds": " / ".join(
            f"{t[0]:.1f}" if t else "-"
            for t in (
                result.redis_per_create,
                result.redis_per_join_local,
                result.redis_per_join_redirected,
            )
        ),
        "redis_bytes": " / ".join(
            f"{t[2] + t[3]:.0f}" if t else "-"
            for t in (
                result.redis_per_create,
                result.redis_per_join_local,
                result.redis_per_join_redirected,
            )
        ),
        "hops": each(result.join_extra_round_trips, "d") or "-",
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
                        log("".join(traceback.format_exception(exc)))
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
        "--probe", type=int, default=20, help="rooms created and joined for Redis"
    )
    parser.add_argument(
        "--redis-idle",
        type=float,
        default=3.0,
        help="seconds of the nodes' background Redis traffic, measured first",
    )
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
        args.probe = 10
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
