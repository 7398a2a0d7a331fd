"""Shared by the attack tests on examples/ws_sfu.py: clients from chosen
loopback addresses (all of 127.0.0.0/8 reaches the server, so an attacker and
a rightful user can have different addresses), and a watched room."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..peers import Peer, PeerFactory
from ..ws_client import WsClient, create_room, join


@contextlib.asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from ``address`` (127.x.y.z)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def ask_to_join(
    http: aiohttp.ClientSession, join_url: str, role: str = "participant"
) -> tuple[int, Any]:
    """POST the join request; (status, body)."""
    return await join(http, join_url, role=role)


@dataclass
class Member:
    """A connected member of a room: its join answer, peer and socket."""

    grant: dict[str, Any]
    peer: Peer
    ws: WsClient


async def connect(
    http: aiohttp.ClientSession, peers: PeerFactory, grant: dict[str, Any], code: int
) -> Member:
    """Open ``grant``'s session (hello with its token) with an aiortc peer."""
    peer = peers(grant["participant_id"], code)
    client = await WsClient.connect(http, grant)
    peer.attach(client)
    return Member(grant, peer, client)


async def room_with_host(
    http: aiohttp.ClientSession, base: str, peers: PeerFactory, code: int = 1
) -> tuple[dict[str, Any], Member]:
    """Create a room and connect its host; (the room's answer, the host)."""
    status, room = await create_room(http, base)
    assert status == 201, room
    status, grant = await join(http, room["join_url"], role="host")
    assert status == 200, grant
    return room, await connect(http, peers, grant, code)
