"""The guests' grace: a participant that goes without leaving on purpose (its
page reloads) keeps its seat against newcomers for
:attr:`pysfu.LimitsConfig.guest_grace` seconds, and gets it back with its
rejoin credential.

Library level: :class:`pysfu.admission.Admission` on an in-process SFU,
aiortc peers through the in-memory adapter. The grace's end is a
:class:`ManualClock` step, never a wait. App level: examples/ws_sfu.py as a
subprocess, the join answer's ``seat_rejoin`` as a bearer token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pysfu import SFU, LimitsConfig, RoomFull, SFUConfig
from pysfu.admission import Admission, JoinGrant
from pysfu.messages import Leave
from pysfu.room import Room

from ..conftest import LOOPBACK
from ..example_server import example_server
from ..helpers import ManualClock, eventually
from ..peers import Peer, PeerFactory
from ..ws_client import WsClient, create_room, join

GRACE = 30.0


def sfu_with_grace(grace: float) -> SFU:
    # aiortc clients cannot receive on a transceiver whose track ended: the
    # host gets new ones for the guest that comes back
    return SFU(
        SFUConfig(
            ice=LOOPBACK,
            limits=LimitsConfig(guest_grace=grace),
            reuse_transceivers=False,
        )
    )


async def take_seat(
    admission: Admission[Any], room: Room, grant: JoinGrant, peer: Peer
) -> Peer:
    """What the WebSocket adapter does with a grant: redeem it, join with
    its ICE credentials (the peer is named after the grant's id)."""
    assert peer.name == grant.participant_id
    admission.redeem(grant.participant_id)
    return await peer.join(
        room,
        ice_username_fragment=grant.credentials.username_fragment,
        ice_password=grant.credentials.password,
    )


async def test_a_guest_that_reloads_keeps_its_seat_for_the_grace(
    peers: PeerFactory,
) -> None:
    sfu = sfu_with_grace(GRACE)
    clock = ManualClock()
    try:
        room = sfu.create_room("r", max_participants=1)
        admission = Admission(sfu, clock=clock)
        host = await peers("host", code=1).join(room, "host")
        first = admission.admit("r", client="10.0.0.1")
        assert first.rejoin and first.rejoin not in repr(first)
        guest = await take_seat(
            admission, room, first, peers(first.participant_id, code=2)
        )
        await host.wait_video_from(guest)

        assert guest.client is not None
        await guest.client.send(Leave(rejoin=True))  # its page reloads
        await eventually(lambda: admission.reserved_seats("r") == 1, what="kept")
        assert not room.participants
        with pytest.raises(RoomFull):  # the seat is kept against newcomers
            admission.admit("r", client="10.0.0.2")
        with pytest.raises(RoomFull):  # a made-up credential is a newcomer's
            admission.admit("r", client="10.0.0.2", rejoin="made-up")

        second = admission.admit("r", client="10.0.0.1", rejoin=first.rejoin)
        assert second.rejoin and second.rejoin != first.rejoin  # rotated
        assert admission.reserved_seats("r") == 0  # the seat is the grant's now
        with pytest.raises(RoomFull):
            admission.admit("r", client="10.0.0.2")
        back = await take_seat(
            admission, room, second, peers(second.participant_id, code=3)
        )
        await host.wait_video_from(back)

        assert back.client is not None
        await back.client.send(Leave(rejoin=True))  # it reloads again
        await eventually(lambda: admission.reserved_seats("r") == 1, what="kept")
        with pytest.raises(RoomFull):  # a spent credential is a newcomer's
            admission.admit("r", client="10.0.0.1", rejoin=first.rejoin)
        clock.advance(GRACE - 0.5)
        with pytest.raises(RoomFull):
            admission.admit("r", client="10.0.0.2")
        clock.advance(0.5)  # the grace is over: the seat is free
        assert admission.reserved_seats("r") == 0
        third = admission.admit("r", client="10.0.0.2")
        with pytest.raises(RoomFull):  # too late: a newcomer like any other
            admission.admit("r", client="10.0.0.3", rejoin=second.rejoin)
        newcomer = await take_seat(
            admission, room, third, peers(third.participant_id, code=4)
        )
        await host.wait_video_from(newcomer)
    finally:
        await sfu.close()


async def test_a_plain_leave_frees_the_seat_at_once(peers: PeerFactory) -> None:
    sfu = sfu_with_grace(GRACE)
    try:
        room = sfu.create_room("r", max_participants=1)
        admission = Admission(sfu, clock=ManualClock())
        grant = admission.admit("r")
        guest = await take_seat(
            admission, room, grant, peers(grant.participant_id, code=2)
        )
        assert guest.client is not None
        await guest.client.send(Leave())  # the guest hung up
        await eventually(lambda: not room.participants, what="the guest gone")
        assert admission.reserved_seats("r") == 0
        assert admission.admit("r", client="10.0.0.2")
    finally:
        await sfu.close()


async def test_the_seats_kept_die_with_the_room(peers: PeerFactory) -> None:
    sfu = sfu_with_grace(GRACE)
    try:
        room = sfu.create_room("r", max_participants=1)
        admission = Admission(sfu, clock=ManualClock())
        grant = admission.admit("r")
        guest = await take_seat(
            admission, room, grant, peers(grant.participant_id, code=2)
        )
        assert guest.client is not None
        await guest.client.send(Leave(rejoin=True))
        await eventually(lambda: admission.reserved_seats("r") == 1, what="kept")
        await room.close("host left")
        assert admission.reserved_seats("r") == 0
        sfu.create_room("r", max_participants=1)  # another room of that id
        assert admission.admit("r")  # no seat kept there
        with pytest.raises(RoomFull):  # nor for the credential of the old one
            admission.admit("r", rejoin=grant.rejoin)
    finally:
        await sfu.close()


async def test_without_a_grace_grants_carry_no_rejoin_credential() -> None:
    sfu = sfu_with_grace(0.0)
    try:
        sfu.create_room("r", max_participants=1)
        admission = Admission(sfu)
        assert admission.admit("r").rejoin is None
    finally:
        await sfu.close()


async def test_a_grant_that_cannot_rejoin_keeps_no_seat(peers: PeerFactory) -> None:
    """WHIP/WHEP clients get no credential: their seat is not kept."""
    sfu = sfu_with_grace(GRACE)
    try:
        room = sfu.create_room("r", max_participants=1)
        admission = Admission(sfu, clock=ManualClock())
        grant = admission.admit("r", rejoinable=False)
        assert grant.rejoin is None
        guest = await take_seat(
            admission, room, grant, peers(grant.participant_id, code=2)
        )
        assert guest.client is not None
        await guest.client.send(Leave(rejoin=True))
        await eventually(lambda: not room.participants, what="the guest gone")
        assert admission.reserved_seats("r") == 0
        assert admission.admit("r")
    finally:
        await sfu.close()


async def test_the_app_gives_a_guest_its_seat_back_over_a_lingering_session(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    """A crashed tab sends no leave: its session holds the seat for the
    reconnect grace. A newcomer is refused; the guest joining again with its
    seat_rejoin takes the seat at once (the old session is removed)."""
    log = tmp_path / "server.log"
    async with example_server(
        "--guest-grace=600", "--reconnect-grace=600", "--log-level=INFO", log=log
    ) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, first = await join(http, room["join_url"])
        assert first["seat_rejoin"] and "host_rejoin" not in first
        assert "seat_rejoin" not in host_grant
        host = peers(host_grant["participant_id"], 1)
        host.attach(host_ws := await WsClient.connect(http, host_grant))
        guest = peers(first["participant_id"], 2)
        guest.attach(guest_ws := await WsClient.connect(http, first))
        await host.wait_video_from(guest)

        await guest_ws.ws.close()  # no leave: the server keeps the session
        api = room["join_url"].replace("/r/", "/api/rooms/") + "/join"

        async def join_with(credential: str | None) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            async with http.post(api, json={}, headers=headers) as response:
                return response.status, await response.json()

        status, refused = await join_with(None)
        assert (status, refused["error"]) == (409, "room_full")
        status, refused = await join_with("not-the-credential")
        assert (status, refused["error"]) == (409, "room_full")
        status, second = await join_with(first["seat_rejoin"])
        assert status == 200, second
        assert second["seat_rejoin"] != first["seat_rejoin"]

        def told(kind: str, participant_id: str) -> bool:
            return any(
                m["type"] == kind and m.get("participant_id") == participant_id
                for m in host_ws.raw
            )

        await eventually(
            lambda: told("participant-left", first["participant_id"]),
            what="the old session gone",
        )
        status, refused = await join_with(None)  # the seat is the guest's
        assert (status, refused["error"]) == (409, "room_full")
        back = peers(second["participant_id"], 3)
        back.attach(await WsClient.connect(http, second))
        await back.wait_video_from(host)
        await eventually(
            lambda: told("participant-joined", second["participant_id"]),
            what="the guest back",
        )
    text = log.read_text()
    assert "left: replaced by its rejoin" in text
    assert "its seat is kept 600 s" in text
    assert "a participant came back to its seat" in text
