"""Attack: fill the server with rooms nobody hosts.

A room whose host never came (or never connected) and an empty room are
closed after ``--room-idle-timeout``; at ``--max-rooms``, creating a room
works again once they are gone, and a hosted room lives on.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ..example_server import example_server
from ..peers import PeerFactory
from ..ws_client import create_room, join
from .app_helpers import connect, room_with_host

pytestmark = [pytest.mark.adversarial, pytest.mark.network]


@pytest.mark.parametrize("mode", [(), ("--workers=2",)], ids=["in-process", "workers"])
async def test_unhosted_rooms_expire_and_make_room_for_new_ones(
    peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    options = ("--max-rooms=3", "--room-idle-timeout=2", "--credential-ttl=3", *mode)
    async with example_server(*options) as base, aiohttp.ClientSession() as http:
        hosted, host = await room_with_host(http, base, peers)
        _, never_joined = await create_room(http, base)
        _, host_never_connected = await create_room(http, base)
        status, _ = await join(http, host_never_connected["join_url"], role="host")
        assert status == 200  # a host grant, never used
        status, body = await create_room(http, base)
        assert (status, body["error"]) == (503, "too_many_rooms")
        created = None
        for _ in range(120):  # liveness bound: a minute
            status, body = await create_room(http, base)
            if status == 201:
                created = body
                break
            assert body["error"] == "too_many_rooms"
            await asyncio.sleep(0.5)
        assert created is not None, "creation stayed refused"
        for gone in (never_joined, host_never_connected):
            # each worker sweeps its rooms on its own beat: wait for both
            for _ in range(60):
                status, body = await join(http, gone["join_url"])
                if status == 404:
                    break
                await asyncio.sleep(0.5)
            assert (status, body.get("error")) == (404, "room_not_found"), body
        # the hosted room is untouched: a guest joins and sees the host
        status, grant = await join(http, hosted["join_url"])
        assert status == 200, grant
        guest = await connect(http, peers, grant, 2)
        assert (await guest.peer.wait_video_from(host.peer)).codes() == {1}
