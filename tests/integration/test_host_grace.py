"""The host's grace: a host that goes without ending the call (a reload, a
lost connection) may come back as host; the room closes only if it does not.

Library level (in-memory signalling, aiortc peers) and the app's level
(examples/ws_sfu.py as a subprocess, its host rejoin credential).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from pysfu import (
    SFU,
    HostAwayEvent,
    LimitsConfig,
    ParticipantJoinedEvent,
    RoomClosedEvent,
    RoomEvent,
    SFUConfig,
)
from pysfu.messages import HostAway, Leave, ParticipantJoined, RoomClosed

from ..conftest import LOOPBACK
from ..example_server import example_server
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory
from ..ws_client import WsClient, create_room, join

#: Longer than any test here takes: coming back "within the grace" must not
#: depend on how loaded the machine is.
LONG_GRACE = 600.0


def sfu_with_grace(grace: float) -> SFU:
    # transceivers are reused by default (not for these aiortc guests: the
    # server gives them new ones, see test_reused_transceivers.py)
    return SFU(SFUConfig(ice=LOOPBACK, limits=LimitsConfig(host_grace=grace)))


async def test_a_host_that_comes_back_within_the_grace_keeps_the_room(
    peers: PeerFactory,
) -> None:
    sfu = sfu_with_grace(LONG_GRACE)
    try:
        room = sfu.create_room("r", max_participants=1)
        events: list[RoomEvent] = []
        sfu.add_listener(events.append)
        host = await peers("host", code=1).join(room, "host")
        guest = await peers("guest", code=2).join(room)
        await guest.wait_video_from(host)

        assert host.client is not None
        await host.client.send(Leave(rejoin=True))  # the host's page reloads
        await eventually(lambda: guest.saw(HostAway), what="host-away")
        assert guest.saw(HostAway) == [HostAway("host", LONG_GRACE)]
        away = [e for e in events if isinstance(e, HostAwayEvent)]
        assert away == [HostAwayEvent("r", "host", "page unloaded", LONG_GRACE)]
        assert not room.closed and room.host_away and room.host is None

        back = await peers("host-again", code=3).join(room, "host")
        await guest.wait_video_from(back)
        assert not room.host_away and room.host is not None
        assert room.host.id == "host-again"
        assert ParticipantJoinedEvent("r", "host-again", "host") in events
        assert ParticipantJoined("host-again", "host", "host-again") in guest.saw(
            ParticipantJoined
        )
        assert not any(isinstance(e, RoomClosedEvent) for e in events)
        assert not guest.saw(RoomClosed)
    finally:
        await sfu.close()


async def test_a_host_that_does_not_come_back_closes_the_room(
    peers: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sfu = sfu_with_grace(0.5)
    try:
        room = sfu.create_room("r", max_participants=1)
        events: list[RoomEvent] = []
        room.add_listener(events.append)
        host = await peers("host", code=1).join(room, "host")
        guest = await peers("guest", code=2).join(room)
        await guest.wait_video_from(host)
        assert host.client is not None
        await host.client.send(Leave(rejoin=True))
        await eventually(lambda: guest.saw(RoomClosed), what="room-closed")
        assert guest.saw(HostAway) == [HostAway("host", 0.5)]
        assert guest.saw(RoomClosed) == [RoomClosed("host left")]
        # members are told first; the event once everyone is closed
        await eventually(lambda: "r" not in sfu.rooms, what="the room gone")
        assert RoomClosedEvent("r", "host left") in events
        assert room.closed
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert "room r: host host left: page unloaded" in infos
        assert "room r: the host did not come back within 0.5 s" in infos
        assert "room r closed: host left" in infos
    finally:
        await sfu.close()


async def test_a_host_leaving_on_purpose_ends_the_call_at_once(
    peers: PeerFactory,
) -> None:
    sfu = sfu_with_grace(LONG_GRACE)
    try:
        room = sfu.create_room("r", max_participants=1)
        host = await peers("host", code=1).join(room, "host")
        guest = await peers("guest", code=2).join(room)
        await guest.wait_video_from(host)
        assert host.client is not None
        await host.client.send(Leave())  # "End call"
        await eventually(lambda: guest.saw(RoomClosed), what="room-closed")
        assert not guest.saw(HostAway)
        assert guest.saw(RoomClosed) == [RoomClosed("host left")]
        assert room.closed
    finally:
        await sfu.close()


async def test_the_app_lets_its_host_back_with_the_rejoin_credential(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with example_server(
        f"--host-grace={LONG_GRACE}", "--log-level=INFO", log=log
    ) as base:
        _, room = await create_room(http, base)
        _, first = await join(http, room["join_url"], role="host")
        assert first["host_rejoin"]  # a single node hands it out too
        _, guest_grant = await join(http, room["join_url"])
        host = peers(first["participant_id"], 1)
        host.attach(host_ws := await WsClient.connect(http, first))
        guest = peers(guest_grant["participant_id"], 2)
        guest.attach(guest_ws := await WsClient.connect(http, guest_grant))
        await guest.wait_video_from(host)

        # the host's page reloads: a leave that means to come back
        await host_ws.ws.send_str('{"type": "leave", "rejoin": true}')
        await eventually(
            lambda: any(m["type"] == "host-away" for m in guest_ws.raw),
            what="host-away",
        )
        api = room["join_url"].replace("/r/", "/api/rooms/") + "/join"

        async def join_as_host(credential: str) -> tuple[int, dict]:
            async with http.post(
                api,
                json={"role": "host"},
                headers={"Authorization": f"Bearer {credential}"},
            ) as response:
                return response.status, await response.json()

        status, refused = await join_as_host("not-the-credential")
        assert (status, refused["error"]) == (401, "unauthorized")
        status, second = await join_as_host(first["host_rejoin"])
        assert (status, second["role"]) == (200, "host")
        assert second["host_rejoin"] != first["host_rejoin"]
        # each rejoin replaces the credential: the old one is spent
        status, _ = await join_as_host(first["host_rejoin"])
        assert status == 401
        back = peers(second["participant_id"], 3)
        back.attach(back_ws := await WsClient.connect(http, second))
        await back.wait_video_from(guest)
        await guest.wait_video_from(back)  # decoded: the pattern's code
        await eventually(
            lambda: any(
                m["type"] == "participant-joined"
                and m["participant_id"] == second["participant_id"]
                and m["role"] == "host"
                for m in guest_ws.raw
            ),
            what="the guest told of the host's return",
        )
        assert not any(m["type"] == "room-closed" for m in guest_ws.raw)

        await back_ws.ws.send_str('{"type": "leave"}')  # "End call": at once
        await eventually(
            lambda: any(m["type"] == "room-closed" for m in guest_ws.raw),
            what="room-closed",
        )
        closed = [m for m in guest_ws.raw if m["type"] == "room-closed"]
        assert closed == [{"type": "room-closed", "reason": "host left"}]
        # once it has closed (members are told first), the room is gone and
        # its credential with it
        deadline = asyncio.get_running_loop().time() + LIVENESS
        while (status := (await join_as_host(second["host_rejoin"]))[0]) != 404:
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.05)
    text = log.read_text()
    assert "went away (page unloaded); waiting 600 s" in text
    assert "the host is back" in text
    assert "closed: host left" in text


async def test_the_app_closes_the_room_when_the_host_stays_away(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with example_server("--host-grace=1", "--log-level=INFO", log=log) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, guest_grant = await join(http, room["join_url"])
        host = peers(host_grant["participant_id"], 1)
        host.attach(host_ws := await WsClient.connect(http, host_grant))
        guest = peers(guest_grant["participant_id"], 2)
        guest.attach(guest_ws := await WsClient.connect(http, guest_grant))
        await guest.wait_video_from(host)
        await host_ws.ws.send_str('{"type": "leave", "rejoin": true}')
        await eventually(
            lambda: any(m["type"] == "room-closed" for m in guest_ws.raw),
            what="room-closed after the grace",
        )
        kinds = [m["type"] for m in guest_ws.raw]
        assert kinds.index("host-away") < kinds.index("room-closed")
        assert (await join(http, room["join_url"]))[0] == 404
    text = log.read_text()
    assert "the host did not come back within 1 s" in text
    assert "closed: host left" in text


async def test_a_host_page_that_vanished_without_a_word_is_replaced(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    """A crashed tab sends no leave: its session holds the host's seat for
    the reconnect grace. The host joining again with its rejoin credential
    takes the seat at once, the room waiting for it meanwhile."""
    async with example_server(
        f"--host-grace={LONG_GRACE}", f"--reconnect-grace={LONG_GRACE}"
    ) as base:
        _, room = await create_room(http, base)
        _, first = await join(http, room["join_url"], role="host")
        _, guest_grant = await join(http, room["join_url"])
        host = peers(first["participant_id"], 1)
        host.attach(host_ws := await WsClient.connect(http, first))
        guest = peers(guest_grant["participant_id"], 2)
        guest.attach(guest_ws := await WsClient.connect(http, guest_grant))
        await guest.wait_video_from(host)

        await host_ws.ws.close()  # no leave: the server keeps the seat
        api = room["join_url"].replace("/r/", "/api/rooms/") + "/join"
        headers = {"Authorization": f"Bearer {first['host_rejoin']}"}
        async with http.post(api, json={"role": "host"}, headers=headers) as r:
            assert r.status == 200
            second = await r.json()
        assert second["role"] == "host"

        def told(kind: str, participant_id: str) -> bool:
            return any(
                m["type"] == kind and m["participant_id"] == participant_id
                for m in guest_ws.raw
            )

        await eventually(
            lambda: told("participant-left", first["participant_id"]),
            what="the old session gone",
        )
        # (host-away follows participant-left: the room sends it after)
        await eventually(
            lambda: told("host-away", first["participant_id"]), what="host-away"
        )
        back = peers(second["participant_id"], 3)
        back.attach(await WsClient.connect(http, second))
        await back.wait_video_from(guest)
        await eventually(
            lambda: told("participant-joined", second["participant_id"]),
            what="the host back",
        )
        assert not any(m["type"] == "room-closed" for m in guest_ws.raw)
