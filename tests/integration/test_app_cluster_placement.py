"""Placement of new rooms in the packaged app's cluster: three app processes
and one real redis-server. A room created through a node is claimed for the
least loaded live node (rooms, participants, CPU from the heartbeats); the
create answer's links name that node, its single-use host ticket works there,
and the room is joinable through any node with media flowing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from ..example_server import (
    RunningExample,
    example_server,
    free_port,
    stop_process,
)
from ..helpers import LIVENESS
from ..peers import PeerFactory
from ..redis_server import RedisServer
from ..ws_client import WsClient
from ..ws_client import create_room as post_room
from .test_app_cluster import (
    TTL,
    api_of,
    cluster_live,
    create_room,
    post_join,
    settled,
)


@pytest.fixture
async def three_nodes(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[list[RunningExample]]:
    """Nodes A, B and C, each an app process of its own (stopped by its pid)."""
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for name in "abc":
            port = free_port()
            started.append(
                await stack.enter_async_context(
                    example_server(
                        f"--redis={redis_server.url}",
                        f"--node-url=http://127.0.0.1:{port}",
                        "--metrics-token=metrics",
                        f"--node-ttl={TTL}",
                        port=port,
                        log=tmp_path / f"node-{name}.log",
                    )
                )
            )
        await settled(redis_server, 3)
        yield started


def owner_of(room: dict[str, Any], nodes: list[RunningExample]) -> RunningExample:
    """The node the create answer's links name."""
    (owner,) = [n for n in nodes if room["join_url"].startswith(f"{n}/r/")]
    assert room["host_url"].startswith(f"{owner}/r/")
    return owner


async def published_participants(
    http: aiohttp.ClientSession, base: str, count: int
) -> None:
    """Wait until ``base`` sees ``count`` participants in the cluster's totals
    (its heartbeat published them, its refresh read them back)."""
    line = f"pysfu_cluster_participants_total {count}.0"
    for _ in range(int(LIVENESS / 0.2)):
        async with http.get(
            f"{base}/metrics", headers={"Authorization": "Bearer metrics"}
        ) as response:
            if line in (await response.text()).splitlines():
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base} never saw {count} participants published")


async def test_rooms_created_through_a_loaded_node_land_on_the_others(
    three_nodes: list[RunningExample], redis_server: RedisServer, peers: PeerFactory
) -> None:
    a, b, c = three_nodes
    async with aiohttp.ClientSession() as http:
        await cluster_live(http, a, b, c, count=3)
        # an even cluster: the node asked keeps the room (no redirect)
        busy = await create_room(http, a)
        assert owner_of(busy, three_nodes) == a
        ticket = busy["host_url"].split("#ticket=")[1]
        _, host_grant, _ = await post_join(
            http, api_of(busy["join_url"]), "host", ticket
        )
        _, guest_grant, _ = await post_join(http, api_of(busy["join_url"]))
        for peer_code, grant in ((1, host_grant), (2, guest_grant)):
            peers(grant["participant_id"], peer_code).attach(
                await WsClient.connect(http, grant)
            )
        await published_participants(http, a, 2)

        # A holds a call: rooms created through A go to B and C, spread
        rooms = [await create_room(http, a) for _ in range(4)]
        owners = [owner_of(room, three_nodes) for room in rooms]
        assert a not in owners
        assert set(owners) == {b, c}

        # the directory agrees: each record names the node of its links
        directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            node_urls = {}
            for node_id in await directory.smembers("pysfu:nodes"):
                record = await directory.get(f"pysfu:node:{node_id}")
                assert record is not None
                node_urls[node_id] = record.split('"url": "')[1].split('"')[0]
            for room, owner in zip(rooms, owners, strict=True):
                node_id = await directory.hget(f"pysfu:room:{room['room']}", "node")
                assert node_urls[node_id] == owner
        finally:
            await directory.aclose()

        # a placed room: its host joins with the ticket A issued, at the room's
        # node (no redirect); a guest through A (one 307); media flows there;
        # the ticket is spent cluster-wide
        room, owner = rooms[0], owners[0]
        ticket = room["host_url"].split("#ticket=")[1]
        status, host_grant, hops = await post_join(
            http, api_of(room["join_url"]), "host", ticket
        )
        assert (status, hops) == (200, 0), host_grant
        via_a = api_of(room["join_url"].replace(owner, a))
        status, guest_grant, hops = await post_join(http, via_a)
        assert (status, hops) == (200, 1), guest_grant
        for grant in (host_grant, guest_grant):
            assert grant["ws_url"].startswith(owner.replace("http", "ws", 1) + "/ws/")
        host = peers(host_grant["participant_id"], 3)
        guest = peers(guest_grant["participant_id"], 4)
        for peer, grant in ((host, host_grant), (guest, guest_grant)):
            peer.attach(await WsClient.connect(http, grant))
        assert (await guest.wait_video_from(host)).codes() == {3}
        assert (await host.wait_video_from(guest)).codes() == {4}
        await guest.wait_audio_from(host)
        for base in (owner, a):
            status, body, _ = await post_join(
                http, api_of(room["join_url"].replace(owner, base)), "host", ticket
            )
            assert (status, body["error"]) == (401, "unauthorized")

        # nobody joined the others yet: their nodes created them at their
        # heartbeat all the same (each joinable as a host, at once, with its
        # ticket; a guest through the loaded node is redirected once)
        for room in rooms[1:]:
            ticket = room["host_url"].split("#ticket=")[1]
            status, body, hops = await post_join(
                http, api_of(room["join_url"]), "host", ticket
            )
            assert (status, hops) == (200, 0), body
            status, body, hops = await post_join(
                http, api_of(room["join_url"].replace(owner_of(room, three_nodes), a))
            )
            assert (status, hops) == (200, 1), body


@pytest.mark.parametrize("round_", range(5))
async def test_concurrent_creations_through_every_node_are_each_placed_once(
    three_nodes: list[RunningExample], redis_server: RedisServer, round_: int
) -> None:
    """24 creations at once, through the three nodes: every answer names one
    node, the directory agrees, no id twice, and every room admits its host
    (with its ticket) at that node."""
    async with aiohttp.ClientSession() as http:
        await cluster_live(http, *three_nodes, count=3)
        rooms = await asyncio.gather(
            *(create_room(http, three_nodes[i % 3]) for i in range(24))
        )
        assert len({room["room"] for room in rooms}) == 24
        directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            owners = [
                await directory.hget(f"pysfu:room:{room['room']}", "node")
                for room in rooms
            ]
        finally:
            await directory.aclose()
        assert None not in owners
        assert len(set(owners)) >= 2  # spread, not all on one node

        async def host_joins(room: dict[str, Any]) -> tuple[int, int]:
            ticket = room["host_url"].split("#ticket=")[1]
            status, _, hops = await post_join(
                http, api_of(room["join_url"]), "host", ticket
            )
            return status, hops

        assert await asyncio.gather(*(host_joins(r) for r in rooms)) == [(200, 0)] * 24


async def published_rooms(redis_server: RedisServer, expected: dict[str, int]) -> None:
    """Wait until each node (by URL) published ``expected`` rooms with its
    heartbeat (what the other nodes place by)."""
    directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    seen: dict[str, int] = {}
    try:
        for _ in range(int(LIVENESS / 0.2)):
            ids = await directory.smembers("pysfu:nodes")
            records = await directory.mget([f"pysfu:node:{i}" for i in ids] or ["-"])
            seen = {
                record["url"]: record["rooms"]
                for record in (json.loads(r) for r in records if r is not None)
            }
            if all(seen.get(url) == count for url, count in expected.items()):
                return
            await asyncio.sleep(0.2)
    finally:
        await directory.aclose()
    raise AssertionError(f"the nodes published {seen}, never {expected}")


async def test_a_node_at_its_max_rooms_gets_no_room_and_a_full_cluster_refuses(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A holds one room at most (--max-rooms=1), B three. Once A holds its
    room, rooms created through A (where A ties as the least loaded) and
    through B (where A has fewer rooms) all go to B, and each admits its host
    there; once B is full too, creating through either node answers what a
    single full node answers: 503 too_many_rooms."""
    port_a, port_b = free_port(), free_port()

    def node(port: int, name: str, max_rooms: int) -> Any:
        return example_server(
            f"--redis={redis_server.url}",
            f"--node-url=http://127.0.0.1:{port}",
            "--metrics-token=metrics",
            f"--node-ttl={TTL}",
            f"--max-rooms={max_rooms}",
            port=port,
            log=tmp_path / f"node-{name}.log",
        )

    async with (
        node(port_a, "a", 1) as a,
        node(port_b, "b", 3) as b,
        aiohttp.ClientSession() as http,
    ):
        await settled(redis_server, 2)
        await cluster_live(http, a, b, count=2)
        nodes = [a, b]
        first = await create_room(http, a)
        assert owner_of(first, nodes) == a  # an even cluster: the node asked
        await published_rooms(redis_server, {a: 1, b: 0})
        assert owner_of(await create_room(http, b), nodes) == b
        await published_rooms(redis_server, {a: 1, b: 1})

        # A ties with B (one room each) and is asked, but is full: B
        through_a = await create_room(http, a)
        assert owner_of(through_a, nodes) == b
        await published_rooms(redis_server, {a: 1, b: 2})
        # A has fewer rooms than B, but is full: B keeps it
        through_b = await create_room(http, b)
        assert owner_of(through_b, nodes) == b
        for room in (through_a, through_b):
            ticket = room["host_url"].split("#ticket=")[1]
            status, body, hops = await post_join(
                http, api_of(room["join_url"]), "host", ticket
            )
            assert (status, hops) == (200, 0), body

        # every node full: refused as a single node refuses
        await published_rooms(redis_server, {a: 1, b: 3})
        for base in (a, b):
            status, body = await post_room(http, base, slug="ascii")
            assert (status, body["error"]) == (503, "too_many_rooms"), body
            assert "max_rooms" in body["message"]


async def test_a_clean_shutdown_hands_back_the_rooms_placed_on_the_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A room placed on B that B has not taken up yet (B's heartbeat, every
    TTL/3, is far off): B's SIGTERM leaves no record naming it, nor its set
    of placed rooms, and the creator's host ticket opens the room through A
    at once (A re-creates it, with its size)."""
    port_a, port_b = free_port(), free_port()

    def node(port: int, name: str, ttl: float) -> Any:
        return example_server(
            f"--redis={redis_server.url}",
            f"--node-url=http://127.0.0.1:{port}",
            f"--node-ttl={ttl}",
            port=port,
            log=tmp_path / f"node-{name}.log",
        )

    async with (
        node(port_a, "a", TTL) as a,
        node(port_b, "b", 600) as b,
        aiohttp.ClientSession() as http,
    ):
        await settled(redis_server, 2)
        assert owner_of(await create_room(http, a), [a, b]) == a
        room = await create_room(http, a)  # A holds a room, B none: to B
        assert owner_of(room, [a, b]) == b
        directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            record = f"pysfu:room:{room['room']}"
            b_id = await directory.hget(record, "node")
            placed = f"pysfu:placed:{b_id}"
            # not taken up: B's first heartbeat is 200 s away
            assert await directory.smembers(placed) == {record}

            stop_process(b.process)  # SIGTERM: a clean shutdown
            assert b.process.returncode == 0

            fields = await directory.hgetall(record)
            assert "node" not in fields, fields  # no dead node named
            assert fields["max_participants"] == "1"
            assert not await directory.exists(placed)
        finally:
            await directory.aclose()

        ticket = room["host_url"].split("#ticket=")[1]
        status, grant, hops = await post_join(
            http, api_of(room["join_url"].replace(b, a)), "host", ticket
        )
        assert (status, hops) == (200, 0), grant
        assert grant["ws_url"].startswith(a.replace("http", "ws", 1) + "/ws/")
