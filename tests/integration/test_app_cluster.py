"""The packaged app as a cluster (``--redis URL --node-url URL``): two app
processes sharing one real redis-server. A room created on node A is joined
through node B: one 307 redirect, then two aiortc clients meet on A; a host
ticket spent once is refused through either node; a closed room is released
for every node. A's rooms are in this process or in worker processes
(``--workers 2``: their closing and load reach the node through the pipe)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from yarl import URL

from pysfu import SFU, SFUConfig
from pysfu.app.cluster import AppCluster, ClusterTotals
from pysfu.cluster import ClusterNode
from pysfu.messages import Leave
from pysfu.workers import WorkerPool

from ..conftest import LOOPBACK
from ..example_server import HOST_KEY, RunningExample, example_server, free_port
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory
from ..redis_server import RedisServer
from ..ws_client import WsClient
from ..ws_client import create_room as post_room

#: The nodes' TTL, as in tests/integration/test_cluster.py: short, so that a killed
#: node's rooms are re-homed soon, long enough for a loaded machine.
TTL = 5.0


@pytest.fixture
async def nodes(
    redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RunningExample, RunningExample]]:
    """Nodes A and B, each an app process of its own (stopped by its pid);
    A's rooms in ``request.param`` worker processes (default 0: in-process)."""
    port_a, port_b = free_port(), free_port()
    workers_a: int = getattr(request, "param", 0)

    def node(port: int, name: str, workers: int = 0) -> Any:
        return example_server(
            f"--redis={redis_server.url}",
            f"--node-url=http://127.0.0.1:{port}",
            "--metrics-token=metrics",
            f"--node-ttl={TTL}",
            f"--workers={workers}",
            port=port,
            log=tmp_path / f"node-{name}.log",
        )

    async with node(port_a, "a", workers_a) as a, node(port_b, "b") as b:
        await settled(redis_server, 2)
        yield a, b


async def settled(redis_server: RedisServer, count: int) -> None:
    """Wait until ``count`` nodes published a heartbeat whose CPU is a
    quarter of a core at most: a node's start-up (its worker processes'
    imports) must not count as load when a test's first room is placed."""
    directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for _ in range(int(LIVENESS / 0.2)):
            records = [
                json.loads(record)
                for record in await directory.mget(
                    [f"pysfu:node:{n}" for n in await directory.smembers("pysfu:nodes")]
                    or ["pysfu:none"]
                )
                if record is not None
            ]
            if len(records) == count and all(r["cpu"] <= 0.25 for r in records):
                return
            await asyncio.sleep(0.2)
    finally:
        await directory.aclose()
    raise AssertionError(f"{count} nodes never published an idle heartbeat")


async def post_join(
    http: aiohttp.ClientSession, api: str, role: str = "participant", key: str = ""
) -> tuple[int, Any, int]:
    """Status, body and redirects followed of a join through ``api``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(api, json={"role": role}, headers=headers) as response:
        return response.status, await response.json(), len(response.history)


def api_of(join_url: str) -> str:
    return join_url.replace("/r/", "/api/rooms/") + "/join"


@pytest.mark.parametrize("nodes", [0, 2], ids=["in-process", "workers"], indirect=True)
async def test_a_room_of_node_a_is_joined_through_node_b_and_media_flows(
    nodes: tuple[RunningExample, RunningExample],
    redis_server: RedisServer,
    peers: PeerFactory,
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{a}/api/rooms", headers={"Authorization": f"Bearer {HOST_KEY}"}
        ) as response:
            assert response.status == 201, await response.text()
            room = await response.json()
        join_a = room["join_url"]
        assert join_a.startswith(f"{a}/r/")
        join_b = join_a.replace(a, b)
        ticket = room["host_url"].split("#ticket=")[1]

        # the room page and the join through B: one 307 each, to the same
        # path on A (the emoji slug stays percent-encoded)
        async with http.get(join_b, allow_redirects=False) as response:
            assert response.status == 307
            assert URL(response.headers["Location"]) == URL(join_a)
        async with http.post(
            api_of(join_b), json={}, allow_redirects=False
        ) as response:
            assert response.status == 307
            assert URL(response.headers["Location"]) == URL(api_of(join_a))

        # the host with its single-use ticket and a guest, both through B.
        # A redirect to another origin drops the Authorization header (aiohttp
        # and browsers alike): the host re-sends it to the Location itself.
        status, refused, hops = await post_join(http, api_of(join_b), "host", ticket)
        assert (status, refused["error"], hops) == (401, "unauthorized", 1)
        async with http.post(
            api_of(join_b),
            json={"role": "host"},
            headers={"Authorization": f"Bearer {ticket}"},
            allow_redirects=False,
        ) as response:
            assert response.status == 307
            location = response.headers["Location"]
        status, host_grant, hops = await post_join(http, location, "host", ticket)
        assert (status, hops) == (200, 0), host_grant
        status, guest_grant, hops = await post_join(http, api_of(join_b))
        assert (status, hops) == (200, 1), guest_grant
        for grant in (host_grant, guest_grant):
            # signalling and media go to A, whichever node was asked
            assert grant["ws_url"].startswith(f"ws://{URL(a).authority}/ws/")

        # the ticket was spent cluster-wide (Redis keeps its digest) and
        # opens the room no more, through either node
        directory = aioredis.Redis.from_url(redis_server.url)
        try:
            assert len(await directory.keys("pysfu:used:ticket:*")) == 1
        finally:
            await directory.aclose()
        for base in (b, a):
            status, body, _ = await post_join(
                http, api_of(join_a.replace(a, base)), "host", ticket
            )
            assert (status, body["error"]) == (401, "unauthorized")

        # each node's /metrics says it admits, and how many rooms it owns
        for base, rooms in ((a, 1), (b, 0)):
            async with http.get(
                f"{base}/metrics", headers={"Authorization": "Bearer metrics"}
            ) as response:
                text = await response.text()
            assert re.search(r'pysfu_cluster_node_admitting\{node_id="\w+"\} 1.0', text)
            assert re.search(
                rf'pysfu_cluster_rooms_owned\{{node_id="\w+"\}} {rooms}.0', text
            )

        host = peers(host_grant["participant_id"], 1)
        guest = peers(guest_grant["participant_id"], 2)
        for peer, grant in ((host, host_grant), (guest, guest_grant)):
            peer.attach(await WsClient.connect(http, grant))
        assert (await guest.wait_video_from(host)).codes() == {1}
        assert (await host.wait_video_from(guest)).codes() == {2}

        # both nodes' /metrics show the cluster's totals (one room, its host
        # and guest on A), once A's heartbeat published them and each node's
        # refresh read them; the snapshots are fetched in the background for
        # the synchronous `eventually`
        metrics: dict[str, str] = {}

        async def scrape() -> None:
            while True:
                for base in (a, b):
                    async with http.get(
                        f"{base}/metrics", headers={"Authorization": "Bearer metrics"}
                    ) as response:
                        metrics[base] = await response.text()
                await asyncio.sleep(0.2)

        totals = (
            "pysfu_cluster_nodes_live 2.0",
            "pysfu_cluster_rooms_total 1.0",
            "pysfu_cluster_participants_total 2.0",
        )
        scraper = asyncio.create_task(scrape())
        try:
            await eventually(
                lambda: all(
                    line in metrics.get(base, "").splitlines()
                    for base in (a, b)
                    for line in totals
                ),
                what="the cluster totals on both nodes",
            )
        finally:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper

        # the host leaves: the room closes on A and is released in Redis,
        # so a join through B is no longer redirected (an unknown room)
        assert host.client is not None
        await host.client.send(Leave())
        for _ in range(int(LIVENESS / 0.1)):
            status, body, hops = await post_join(http, api_of(join_b))
            if hops == 0:
                break
            await asyncio.sleep(0.1)
        assert (status, body["error"], hops) == (404, "room_not_found", 0)


async def test_a_claimed_room_id_is_not_created_again_on_another_node(
    nodes: tuple[RunningExample, RunningExample],
) -> None:
    """Many rooms created alternately through A and B: every id is distinct,
    placed on one node (which the answer's links name), and each node's
    rooms redirect from the other."""
    a, b = nodes
    created: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(6):
            base = (a, b)[i % 2]
            async with http.post(
                f"{base}/api/rooms",
                json={"slug": "ascii"},
                headers={"Authorization": f"Bearer {HOST_KEY}"},
            ) as response:
                assert response.status == 201
                room = await response.json()
            owner = a if room["join_url"].startswith(f"{a}/") else b
            assert room["join_url"] == f"{owner}/r/{room['room']}"
            created[room["room"]] = owner
        assert len(created) == 6
        for room_id, owner in created.items():
            other = b if owner == a else a
            async with http.post(
                f"{other}/api/rooms/{room_id}/join", json={}, allow_redirects=False
            ) as response:
                assert response.status == 307
                assert response.headers["Location"].startswith(f"{owner}/")


async def test_cluster_totals_keep_their_last_snapshot_while_redis_is_down(
    redis_server: RedisServer, sfu: SFU, caplog: pytest.LogCaptureFixture
) -> None:
    """/metrics reads the totals without calling Redis: a refresh that fails
    keeps the last snapshot, and the outage is logged once, not per refresh."""
    cluster = AppCluster(redis_server.url, "http://127.0.0.1:1", sfu, ttl=1.5)
    await cluster.start()
    try:
        assert cluster.totals == ClusterTotals(nodes=1, rooms=0, participants=0)
        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="pysfu.app"):
            for _ in range(3):
                assert not await cluster.refresh_totals()
            assert cluster.totals == ClusterTotals(nodes=1, rooms=0, participants=0)
            redis_server.start()
            assert await cluster.refresh_totals()
        messages = [r.getMessage() for r in caplog.records if r.name == "pysfu.app"]
        assert sum("cluster totals: Redis did not answer" in m for m in messages) == 1
        assert "cluster totals: Redis answers again" in messages
    finally:
        await cluster.close()


async def test_a_dead_workers_rooms_are_released_the_others_kept(
    redis_server: RedisServer,
) -> None:
    """A node whose rooms are in worker processes: the heartbeat publishes
    the pool's rooms; the rooms of a worker killed with SIGKILL are released
    in Redis (the pool reports them closed), those of the other worker stay
    claimed until they close."""
    pool = WorkerPool(2, SFUConfig(ice=LOOPBACK))
    await pool.start()
    cluster = AppCluster(redis_server.url, "http://pool.test", pool, ttl=TTL)
    await cluster.start()

    async def owner(room_id: str) -> str | None:
        info = await cluster.node.owner_of(room_id)
        return None if info is None else info.id

    async def released(room_id: str) -> None:
        for _ in range(int(LIVENESS / 0.1)):
            if await owner(room_id) is None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"room {room_id} still claimed")

    try:
        for worker, room_id in enumerate(("doomed", "fine")):
            assert await cluster.claim(room_id)
            await pool.create_room(room_id, worker=worker)
            cluster.release_when_closed(room_id)
        assert await cluster.node.heartbeat()
        published = await cluster.node.node(cluster.node.id)
        assert published is not None
        assert (published.rooms, published.participants) == (2, 0)

        victim = pool.workers[0].pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        await released("doomed")
        assert await owner("fine") == cluster.node.id
        await pool.close_room("fine")
        await released("fine")
    finally:
        await cluster.close()
        await pool.close()


def test_redis_and_node_url_go_together() -> None:
    for options in (["--redis", "redis://127.0.0.1:1/0"], ["--node-url", "http://x"]):
        done = subprocess.run(
            [sys.executable, "-m", "pysfu", "serve", *options],
            capture_output=True,
            text=True,
            timeout=LIVENESS,
        )
        assert done.returncode == 2
        assert "--redis and --node-url go together" in done.stderr


def test_without_redis_the_app_does_not_import_it() -> None:
    code = (
        "import sys; from pysfu.app.server import SfuApp, parse_args; "
        "SfuApp(parse_args(['--ice-address=127.0.0.1'])); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis' "
        "or m in ('pysfu.cluster', 'pysfu.app.cluster')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=LIVENESS
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def cluster_live(http: aiohttp.ClientSession, *bases: str, count: int) -> None:
    """Wait until each node's last refresh saw ``count`` live nodes (so that
    its join answers list the others)."""
    line = f"pysfu_cluster_nodes_live {count}.0"
    for _ in range(int(LIVENESS / 0.2)):
        seen = []
        for base in bases:
            async with http.get(
                f"{base}/metrics", headers={"Authorization": "Bearer metrics"}
            ) as response:
                seen.append(line in (await response.text()).splitlines())
        if all(seen):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the nodes never saw {count} live nodes")


async def create_room(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """A new room (ASCII link) through ``base``; fails unless created."""
    status, room = await post_room(http, base, slug="ascii")
    assert status == 201, room
    return dict(room)


async def test_a_killed_nodes_room_is_re_homed_with_its_host(
    nodes: tuple[RunningExample, RunningExample], peers: PeerFactory
) -> None:
    """kill -9 of node A: the room's host, with the rejoin credential of its
    join answer, and a guest join through B, which re-creates the room (same
    id, same size) and admits them; their media flows there. The credential
    opens no other room."""
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        await cluster_live(http, a, b, count=2)
        room = await create_room(http, a)
        other = await create_room(http, b)
        ticket = room["host_url"].split("#ticket=")[1]
        status, host_grant, _ = await post_join(
            http, api_of(room["join_url"]), "host", ticket
        )
        assert status == 200, host_grant
        # where to go if A dies, and the host's way back in
        assert host_grant["cluster"]["nodes"] == [b]
        assert host_grant["cluster"]["rejoin_within"] == 3 * TTL
        credential = host_grant["host_rejoin"]
        assert credential
        status, guest_grant, _ = await post_join(http, api_of(room["join_url"]))
        assert (status, "host_rejoin" in guest_grant) == (200, False)
        assert guest_grant["cluster"]["nodes"] == [b]

        # the credential is this room's only: B's room refuses it
        status, body, _ = await post_join(
            http, api_of(other["join_url"]), "host", credential
        )
        assert (status, body["error"]) == (401, "unauthorized")

        # B answers the CORS preflight of a join from A's pages (they rejoin
        # through B when A dies), and nobody else's
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        api_b = f"{b}/api/rooms/{room['room']}/join"
        async with http.options(api_b, headers={"Origin": a, **preflight}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == a
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        evil = "http://evil.test"
        async with http.options(
            api_b, headers={"Origin": evil, **preflight}
        ) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers

        os.kill(a.process.pid, signal.SIGKILL)
        a.process.wait(timeout=LIVENESS)

        # through B: redirected to A (dead: refused) while A's key lives,
        # then B re-homes the room and admits the host
        host_again: dict[str, Any] = {}
        for _ in range(int(LIVENESS / 0.2)):
            async with http.post(
                api_b,
                json={"role": "host", "name": "host"},
                # as A's page sends it: cross-origin, its answer readable there
                headers={"Authorization": f"Bearer {credential}", "Origin": a},
                allow_redirects=False,
            ) as response:
                if response.status == 200:
                    assert response.headers["Access-Control-Allow-Origin"] == a
                    host_again = await response.json()
                    break
                assert response.status in (307, 503), await response.text()
            await asyncio.sleep(0.2)
        assert host_again, "B never re-homed the room"
        assert host_again["role"] == "host"
        assert host_again["ws_url"].startswith(f"ws://{URL(b).authority}/ws/")
        assert host_again["host_rejoin"] != credential  # a fresh one
        status, guest_again, hops = await post_join(http, api_b)
        assert (status, hops) == (200, 0), guest_again
        # the stored size came along: a second guest does not fit
        status, body, _ = await post_join(http, api_b)
        assert (status, body["error"]) == (409, "room_full")

        host = peers(host_again["participant_id"], 1)
        guest = peers(guest_again["participant_id"], 2)
        for peer, grant in ((host, host_again), (guest, guest_again)):
            peer.attach(await WsClient.connect(http, grant))
        assert (await guest.wait_video_from(host)).codes() == {1}
        assert (await host.wait_video_from(guest)).codes() == {2}


@pytest.fixture
async def app_clusters(
    redis_server: RedisServer,
) -> AsyncIterator[list[AppCluster]]:
    """Two app nodes in this process, each with its own SFU."""
    made: list[AppCluster] = []
    sfus: list[SFU] = []
    for i in range(2):
        sfus.append(SFU())
        made.append(
            AppCluster(redis_server.url, f"http://node{i}.test", sfus[-1], ttl=TTL)
        )
        await made[-1].start()
    yield made
    for cluster, each in zip(made, sfus, strict=True):
        await cluster.close()
        await each.close()


async def test_concurrent_re_homing_yields_one_owner(
    redis_server: RedisServer, app_clusters: list[AppCluster]
) -> None:
    """A room of a node that died, re-homed by joins on two nodes at once:
    one claims it, the other is sent to it."""
    dead = ClusterNode(redis_server.url, url="http://dead.test", ttl=60)
    await dead.start()
    try:
        assert (await dead.claim_room("orphan")).mine
        assert await dead.set_room_fields("orphan", {"max_participants": "3"})
        # the node dies: its key is gone long before its next heartbeat
        await dead.redis.delete(f"pysfu:node:{dead.id}")
        sizes = await asyncio.gather(*(c.orphaned("orphan") for c in app_clusters))
        assert sizes == [3, 3]
        outcomes = await asyncio.gather(*(c.adopt("orphan") for c in app_clusters))
        winners = [c for c, o in zip(app_clusters, outcomes, strict=True) if o is None]
        assert len(winners) == 1
        assert [o for o in outcomes if o is not None] == [winners[0].url]
        # re-homed: no longer orphaned for anyone
        for cluster in app_clusters:
            assert await cluster.orphaned("orphan") is None
    finally:
        dead.rooms.clear()  # nothing of its own to release
        await dead.close()


async def test_the_host_rejoin_credential_opens_its_room_while_it_exists(
    app_clusters: list[AppCluster],
) -> None:
    """Valid on every node for its own room; refused for another room, once
    replaced by a newer one, and after the room closed."""
    owner, other = app_clusters
    for room_id in ("first", "second"):
        assert await owner.claim(room_id)
    credential = await owner.issue_host_rejoin("first")
    assert credential is not None
    for cluster in app_clusters:
        assert await cluster.host_rejoin_valid("first", credential)
        assert not await cluster.host_rejoin_valid("second", credential)
        assert not await cluster.host_rejoin_valid("first", "guess")
        assert not await cluster.host_rejoin_valid("first", None)
    newer = await owner.issue_host_rejoin("first")
    assert newer is not None
    assert not await other.host_rejoin_valid("first", credential)
    assert await other.host_rejoin_valid("first", newer)
    # only the owner stores one
    assert await other.issue_host_rejoin("second") is None
    await owner.release("first")  # the room closed
    assert not await other.host_rejoin_valid("first", newer)


async def test_a_redis_restart_keeps_the_calls_and_joins_work_again(
    nodes: tuple[RunningExample, RunningExample],
    redis_server: RedisServer,
    peers: PeerFactory,
) -> None:
    """Redis stopped mid-call and started again, empty: the call's media
    never stops (media does not depend on Redis); meanwhile creations are
    refused with a 503, never a 500; once Redis is back the nodes register
    and claim their rooms again, a join through the other node is redirected
    to the room's node again, and a new room is created and joined."""
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        await cluster_live(http, a, b, count=2)
        room = await create_room(http, a)
        owner = a if room["join_url"].startswith(f"{a}/") else b
        other = b if owner == a else a
        ticket = room["host_url"].split("#ticket=")[1]
        status, host_grant, _ = await post_join(
            http, api_of(room["join_url"]), "host", ticket
        )
        assert status == 200, host_grant
        status, guest_grant, _ = await post_join(http, api_of(room["join_url"]))
        assert status == 200, guest_grant
        host = peers(host_grant["participant_id"], 1)
        guest = peers(guest_grant["participant_id"], 2)
        for peer, grant in ((host, host_grant), (guest, guest_grant)):
            peer.attach(await WsClient.connect(http, grant))
        await guest.wait_video_from(host)
        await host.wait_video_from(guest)

        def frames() -> tuple[int, int]:
            seen = [
                track.frames if track is not None else 0
                for track in (
                    host.track_from(guest.name, "video"),
                    guest.track_from(host.name, "video"),
                )
            ]
            return seen[0], seen[1]

        def grew(since: tuple[int, int]) -> bool:
            return all(n > t + 30 for n, t in zip(frames(), since, strict=True))

        redis_server.stop()
        down = frames()
        # both nodes fenced (cut off for a TTL): the call goes on both ways
        for base in (a, b):
            for _ in range(int(LIVENESS / 0.2)):
                async with http.get(
                    f"{base}/metrics", headers={"Authorization": "Bearer metrics"}
                ) as response:
                    if re.search(
                        r"pysfu_cluster_node_admitting\{[^}]*\} 0.0",
                        await response.text(),
                    ):
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"{base} never fenced itself")
        await eventually(lambda: grew(down), what="video both ways while Redis is down")
        async with http.post(
            f"{other}/api/rooms", headers={"Authorization": f"Bearer {HOST_KEY}"}
        ) as response:
            assert response.status == 503, await response.text()
            assert (await response.json())["error"] in (
                "node_fenced",
                "cluster_unavailable",
            )

        redis_server.start()  # empty: the nodes register and claim again
        via_other = api_of(room["join_url"].replace(owner, other))
        for _ in range(int(LIVENESS / 0.2)):
            async with http.post(via_other, json={}, allow_redirects=False) as response:
                if response.status == 307:
                    assert response.headers["Location"].startswith(f"{owner}/")
                    break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the room's node never claimed it again")
        fresh = await create_room(http, other)
        fresh_ticket = fresh["host_url"].split("#ticket=")[1]
        status, body, _ = await post_join(
            http, api_of(fresh["join_url"]), "host", fresh_ticket
        )
        assert status == 200, body
        back = frames()
        await eventually(lambda: grew(back), what="video both ways once Redis is back")
