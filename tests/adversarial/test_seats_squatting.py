"""Attacks on seats: a client that takes grants and never connects.

Grants that wait for their client to open the signalling hold a seat only
briefly, one client address holds only so many, and the host sees them and
can refuse them. Clients come from distinct loopback addresses.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..example_server import example_server
from ..helpers import eventually
from ..peers import PeerFactory
from ..ws_client import join
from .app_helpers import client_from, connect, room_with_host

pytestmark = [pytest.mark.adversarial, pytest.mark.network]


async def test_a_squatter_cannot_keep_a_one_seat_room_full(
    peers: PeerFactory,
) -> None:
    async with (
        example_server("--max-participants=1") as base,
        client_from("127.0.0.1") as http,
        client_from("127.0.0.66") as squatter,
    ):
        room, host = await room_with_host(http, base, peers)
        stop = asyncio.Event()
        squatted: list[int] = []

        async def squat() -> None:
            """Ask for the seat again and again; never open a socket."""
            for _ in range(2000):  # bounded; ~20 per second
                if stop.is_set():
                    return
                status, _ = await join(squatter, room["join_url"])
                squatted.append(status)
                await asyncio.sleep(0.05)

        squatting = asyncio.create_task(squat())
        try:
            await eventually(lambda: 200 in squatted, what="the squatter has a seat")
            grant: dict[str, Any] | None = None
            refusals = 0
            for _ in range(60):  # the rightful participant asks every half second
                status, body = await join(http, room["join_url"])
                if status == 200:
                    grant = body
                    break
                assert (status, body["error"]) == (409, "room_full")
                refusals += 1
                await asyncio.sleep(0.5)
            assert grant is not None, f"room_full {refusals} times in a row"
            print(f"the rightful participant got in after {refusals} room_full")
            guest = await connect(http, peers, grant, 2)
            assert (await guest.peer.wait_video_from(host.peer)).codes() == {1}
        finally:
            stop.set()
            await squatting
        assert squatted.count(200) >= 1


async def test_grants_flooding_twenty_rooms_do_not_close_another(
    peers: PeerFactory,
) -> None:
    async with example_server() as base, client_from("127.0.0.1") as http:
        rooms = []
        for _ in range(21):
            async with http.post(
                f"{base}/api/rooms",
                json={"max_participants": 50},
                headers={"Authorization": "Bearer test-host-key"},
            ) as response:
                assert response.status == 201
                rooms.append((await response.json())["join_url"])
        flooded, spared = rooms[:20], rooms[20]
        statuses: dict[int, int] = {}
        # 1,000 requests, 50 per room, from ten addresses
        for n in range(10):
            async with client_from(f"127.0.1.{n + 1}") as attacker:
                for i in range(100):
                    url = flooded[(n * 100 + i) % 20]
                    status, _ = await join(attacker, url)
                    statuses[status] = statuses.get(status, 0) + 1
        assert sum(statuses.values()) == 1000
        print("flood answers by status:", statuses)
        # the other room is served as if nothing happened
        status, body = await join(http, spared, role="host")
        assert status == 200, body
        host = await connect(http, peers, body, 1)
        status, body = await join(http, spared)
        assert status == 200, body
        guest = await connect(http, peers, body, 2)
        assert (await guest.peer.wait_video_from(host.peer)).codes() == {1}
        assert statuses.get(200, 0) <= 10 * 20  # the per-client quota
        assert statuses[503] == 1000 - statuses[200]  # too_many_pending


async def test_the_host_sees_who_waits_and_refuses_them(peers: PeerFactory) -> None:
    async with (
        # a long hold: the grant must still wait when the host refuses it
        example_server("--max-participants=1", "--pending-hold=30") as base,
        client_from("127.0.0.1") as http,
        client_from("127.0.0.66") as squatter,
    ):
        room, host = await room_with_host(http, base, peers)
        status, taken = await join(squatter, room["join_url"])
        assert status == 200
        await eventually(
            lambda: (
                [w["participant_id"] for w in host.ws.waiting]
                == [taken["participant_id"]]
            ),
            what="the host sees the squatter waiting",
        )
        assert (await join(http, room["join_url"]))[0] == 409
        await host.ws.ws.send_json(
            {"type": "refuse", "participant_id": taken["participant_id"]}
        )
        await eventually(lambda: not host.ws.waiting, what="nobody waits")
        status, grant = await join(http, room["join_url"])
        assert status == 200, grant  # the seat came back at once
        guest = await connect(http, peers, grant, 2)
        assert (await guest.peer.wait_video_from(host.peer)).codes() == {1}
        # the refused grant opens nothing
        ws = await squatter.ws_connect(taken["ws_url"])
        await ws.send_json({"type": "hello", "token": taken["signalling_token"]})
        message = await ws.receive_json(timeout=30)
        assert (message["type"], message["code"]) == ("error", "credential_refused")
        await ws.close()
        # a participant cannot refuse anybody
        await guest.ws.ws.send_json(
            {"type": "refuse", "participant_id": host.grant["participant_id"]}
        )
        await eventually(
            lambda: any(m.get("type") == "error" for m in guest.ws.raw),
            what="the participant's refuse is refused",
        )
