"""docs/snippets/starlette_join.py, the how-to's join backend and signalling
in Starlette: served by uvicorn on 127.0.0.1, two aiortc clients join
through it and see each other; refusals come back as the protocol says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pysfu import SFU, SFUConfig
from pysfu.admission import Admission

from ..conftest import LOOPBACK
from ..example_server import free_port
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory, RoomClosed
from ..ws_client import WsClient
from .test_docs import snippet

HOST_KEY = "starlette-host-key"


@pytest.fixture
async def base() -> AsyncIterator[str]:
    """The snippet's app on 127.0.0.1 with a room "r" for a host and one
    participant."""
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    sfu.create_room("r", max_participants=1)
    port = free_port()
    server = snippet("starlette_join").server(Admission(sfu), HOST_KEY, port)
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or serving.done(), what="uvicorn")
        assert not serving.done(), serving
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, LIVENESS)
        await sfu.close()


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, key: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_two_clients_meet_through_the_starlette_app(
    base: str, peers: PeerFactory
) -> None:
    async with aiohttp.ClientSession() as http:
        join = f"{base}/api/rooms/r/join"
        status, refused = await post(http, join, {"role": "host"}, key="wrong")
        assert (status, refused["error"]) == (401, "unauthorized")
        status, refused = await post(http, f"{base}/api/rooms/nowhere/join", {})
        assert (status, refused["error"]) == (404, "room_not_found")
        status, refused = await post(http, join, {"role": "admin"})
        assert (status, refused["error"]) == (400, "bad_request")
        status, host_grant = await post(http, join, {"role": "host"}, key=HOST_KEY)
        assert (status, host_grant["role"]) == (200, "host")
        status, guest_grant = await post(http, join, {"name": "Gus"})
        assert status == 200
        assert guest_grant["ws_url"].startswith(f"ws://127.0.0.1:{base[-5:]}/ws/")
        status, refused = await post(http, join, {})
        assert (status, refused["error"]) == (409, "room_full")

        host = peers(host_grant["participant_id"], 1)
        host_ws = await WsClient.connect(http, host_grant)
        host.attach(host_ws)
        guest = peers(guest_grant["participant_id"], 2)
        guest.attach(await WsClient.connect(http, guest_grant))
        await guest.wait_video_from(host)
        await host.wait_video_from(guest)
        await host.wait_audio_from(guest)
        offers = [m["sdp"] for m in host_ws.raw if m["type"] == "offer"]
        assert all("a=ice-pwd:REDACTED" in sdp for sdp in offers)

        # a spent signalling token is refused on the socket
        replay = await http.ws_connect(guest_grant["ws_url"])
        await replay.send_json(
            {"type": "hello", "token": guest_grant["signalling_token"]}
        )
        refusal = await replay.receive_json(timeout=LIVENESS)
        assert (refusal["type"], refusal["code"]) == ("error", "credential_used")
        await replay.close()

        # the host ends the call: the guest is told, and its socket closes
        await host_ws.ws.send_str('{"type": "leave"}')
        await eventually(lambda: guest.saw(RoomClosed), what="room-closed")
        assert guest.saw(RoomClosed) == [RoomClosed("host left")]
