"""Rooms on several nodes (docs/snippets/cluster.py) with real aiortc clients:
a join through a node that does not hold the room is redirected once, and the
two members see and hear each other on the room's node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pysfu import SFU, IceConfig, SFUConfig
from pysfu.cluster import ClusterNode

from ..peers import PeerFactory
from ..redis_server import RedisServer, free_tcp_port
from ..ws_client import WsClient
from .test_docs import snippet

Node = tuple[str, SFU, ClusterNode]


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    runners: list[web.AppRunner] = []
    for _ in range(2):
        port = free_tcp_port()
        url = f"http://127.0.0.1:{port}"
        sfu = SFU(SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",))))
        runner, node = await snippet("cluster").start_node(
            redis_server.url, url, sfu, "127.0.0.1", port
        )
        runners.append(runner)
        nodes.append((url, sfu, node))
    yield nodes
    for (_, sfu, node), runner in zip(nodes, runners, strict=True):
        await node.close()
        await runner.cleanup()
        await sfu.close()


async def join(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], int]:
    async with http.post(url) as response:
        assert response.status == 200, await response.text()
        return await response.json(), len(response.history)


async def test_a_join_through_another_node_is_redirected_once_and_media_flows(
    cluster: list[Node], peers: PeerFactory
) -> None:
    (url_a, sfu_a, _), (url_b, sfu_b, _) = cluster
    async with aiohttp.ClientSession() as http:
        host_grant, _ = await join(http, f"{url_a}/join/lesson?role=host")
        # the least loaded node got it; ask the other one for the guest
        owner = sfu_a if "lesson" in sfu_a.rooms else sfu_b
        other_url = url_b if owner is sfu_a else url_a
        guest_grant, guest_hops = await join(http, f"{other_url}/join/lesson")
        assert guest_hops == 1  # one extra round trip, no more
        assert list(owner.rooms) == ["lesson"]
        assert not (sfu_b if owner is sfu_a else sfu_a).rooms
        assert (
            host_grant["ws_url"].split("/ws/")[0]
            == guest_grant["ws_url"].split("/ws/")[0]
        )

        clients = []
        for code, grant in ((1, host_grant), (2, guest_grant)):
            ws = await http.ws_connect(grant["ws_url"])
            client = WsClient(ws, grant["ice_password"])
            await client.hello(grant["signalling_token"])
            clients.append(peers(grant["participant_id"], code).attach(client))
        host, guest = clients
        assert (await guest.wait_video_from(host)).codes() == {1}
        assert (await host.wait_video_from(guest)).codes() == {2}
        await guest.wait_audio_from(host)


async def test_rooms_spread_over_the_nodes(cluster: list[Node]) -> None:
    (url_a, sfu_a, _), (_, sfu_b, _) = cluster
    async with aiohttp.ClientSession() as http:
        for i in range(6):
            await join(http, f"{url_a}/join/room-{i}?role=host")
            for _, _, node in cluster:
                await node.heartbeat()  # publish the new load now
    assert (len(sfu_a.rooms), len(sfu_b.rooms)) == (3, 3)


async def test_a_closed_room_is_released_for_any_node(cluster: list[Node]) -> None:
    (url_a, sfu_a, node_a), (_, sfu_b, node_b) = cluster
    async with aiohttp.ClientSession() as http:
        await join(http, f"{url_a}/join/short?role=host")
    owner_sfu, owner, other = (
        (sfu_a, node_a, node_b) if "short" in sfu_a.rooms else (sfu_b, node_b, node_a)
    )
    await owner_sfu.close_room("short")
    for _ in range(200):
        if "short" not in owner.rooms and await other.owner_of("short") is None:
            break
        await asyncio.sleep(0.05)
    assert (await other.claim_room("short")).mine
