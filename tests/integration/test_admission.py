"""Host keys, join grants and room slugs."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest

from pysfu import SFU, HostTaken, RoomFull, RoomNotFound, SFUConfig
from pysfu.admission import Admission, HostKeys, IceCredentials, redact_ice_password
from pysfu.backend import RoomSeats
from pysfu.errors import (
    CredentialExpired,
    CredentialRefused,
    CredentialUnknown,
    CredentialUsed,
    TooManyPending,
    Unauthorized,
)
from pysfu.signalling import ServerMessage
from pysfu.slugs import EMOJI_ALPHABET, ascii_slug, emoji_slug, slug_bits, slug_path
from pysfu.workers import WorkerPool

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, ManualClock

Rooms = SFU | WorkerPool


@pytest.fixture(params=["sfu", "pool"])
async def rooms(request: pytest.FixtureRequest) -> AsyncIterator[Rooms]:
    """Admission's rules hold alike for rooms in this process and in workers."""
    if request.param == "sfu":
        sfu = SFU(SFUConfig(ice=LOOPBACK))
        yield sfu
        await sfu.close()
    else:
        async with WorkerPool(1, SFUConfig(ice=LOOPBACK)) as pool:
            yield pool


async def create_room(rooms: Rooms, room_id: str, max_participants: int) -> None:
    if isinstance(rooms, WorkerPool):
        await rooms.create_room(room_id, max_participants=max_participants)
    else:
        rooms.create_room(room_id, max_participants=max_participants)


def test_host_keys() -> None:
    keys = HostKeys(["alpha", "beta"])
    assert keys.check("beta") and keys.check("alpha")
    assert not keys.check("gamma") and not keys.check("") and not keys.check(None)
    assert "alpha" not in repr(keys) and "beta" not in repr(keys)
    with pytest.raises(ValueError):
        HostKeys([])


def test_generated_ice_credentials_are_valid_and_not_printed() -> None:
    from pysfu._aiortc import validate_ice_credentials

    credentials = IceCredentials.generate()
    validate_ice_credentials(credentials.username_fragment, credentials.password)
    assert credentials.password not in repr(credentials)
    assert IceCredentials.generate() != credentials


def test_offer_passwords_are_redacted() -> None:
    sdp = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\nm=audio\r\n"
    redacted = redact_ice_password(sdp)
    assert "secret" not in redacted and "a=ice-pwd:REDACTED\r\n" in redacted
    assert "a=ice-ufrag:abcd" in redacted


def test_emoji_slugs() -> None:
    assert len(set(EMOJI_ALPHABET)) == 256
    assert all(unicodedata.name(e, "") for e in EMOJI_ALPHABET)
    slug = emoji_slug()
    assert len(slug) == 6 and slug_bits(slug) == 48
    assert unquote(slug_path(slug)) == slug and slug_path(slug).isascii()
    assert len({emoji_slug() for _ in range(1000)}) == 1000
    assert slug_bits(ascii_slug()) >= 64 and slug_path(ascii_slug()).isascii()


async def test_admission_rules_and_single_use(
    rooms: Rooms, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    admission = Admission(rooms, credential_ttl=30, clock=lambda: now[0])
    await create_room(rooms, "r", max_participants=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RoomNotFound):
        admission.admit("nope")
    with pytest.raises(Unauthorized):
        admission.admit("r", "host")
    host = admission.admit("r", "host", host_authorized=True)
    with pytest.raises(HostTaken):
        admission.admit("r", "host", host_authorized=True)
    guest = admission.admit("r", name="x" * 100)
    assert len(guest.name) == 64
    with pytest.raises(RoomFull):
        admission.admit("r")  # the granted seat counts
    assert admission.redeem(guest.participant_id) is guest
    with pytest.raises(CredentialUsed):
        admission.redeem(guest.participant_id)
    with pytest.raises(CredentialUnknown):
        admission.redeem("p-made-up")
    now[0] = 31.0
    with pytest.raises(CredentialExpired):
        admission.redeem(host.participant_id)
    assert admission.admit("r", "host", host_authorized=True)  # the seat came back
    assert host.credentials.password not in caplog.text
    assert rooms.seats("r") == RoomSeats("r", 1, has_host=False, participants=0)


async def test_credentials_that_expire_unconnected_free_the_seat(rooms: Rooms) -> None:
    # the grant is redeemed at once whatever the machine's speed (a clock that
    # stands still); the connection deadline is the real 1 s timer after it
    admission = Admission(rooms, credential_ttl=1.0, clock=ManualClock())
    await create_room(rooms, "r", max_participants=1)
    grant = admission.admit("r", name="late")
    got: list[ServerMessage] = []

    async def outbox(message: ServerMessage) -> None:
        got.append(message)

    participant = await admission.join(grant.participant_id, outbox)
    assert rooms.seats("r").participants == 1
    with pytest.raises(RoomFull):
        admission.admit("r")
    # nobody answers the offer, so the connection never comes up
    await asyncio.wait_for(participant.wait_closed(), LIVENESS)
    assert rooms.seats("r").participants == 0
    assert admission.admit("r")  # the seat came back
    with pytest.raises(CredentialUsed):
        admission.redeem(grant.participant_id)
    assert [type(m).__name__ for m in got][:2] == ["Joined", "Offer"]
    # a host who joined (not merely admitted) holds the host seat
    host = admission.admit("r", "host", host_authorized=True)
    await admission.join(host.participant_id, outbox)
    assert rooms.seats("r").has_host
    with pytest.raises(HostTaken):
        admission.admit("r", "host", host_authorized=True)


async def test_a_wrong_signalling_token_leaves_the_grant_alone(rooms: Rooms) -> None:
    admission = Admission(rooms)
    await create_room(rooms, "r", max_participants=1)
    grant = admission.admit("r")

    async def outbox(message: ServerMessage) -> None:
        pass

    for token in ("", grant.participant_id, grant.credentials.password):
        with pytest.raises(CredentialUnknown):
            await admission.join_with_token(grant.participant_id, token, outbox)
    assert grant.signalling_token not in repr(grant)
    participant = await admission.join_with_token(
        grant.participant_id, grant.signalling_token, outbox
    )
    assert participant.id == grant.participant_id
    with pytest.raises(CredentialUsed):
        await admission.join_with_token(
            grant.participant_id, grant.signalling_token, outbox
        )


async def test_waiting_grants_give_way_and_are_counted_per_client(
    rooms: Rooms,
) -> None:
    now = [0.0]
    admission = Admission(rooms, pending_hold=10, clock=lambda: now[0])
    await create_room(rooms, "r", max_participants=1)
    changes: list[str] = []
    admission.add_waiting_listener(changes.append)
    squatter = admission.admit("r", client="10.0.0.66")
    assert [g.participant_id for g in admission.waiting("r")] == [
        squatter.participant_id
    ]
    with pytest.raises(RoomFull):  # fresh: it holds its seat...
        admission.admit("r", client="10.0.0.1")
    now[0] = 2.0
    with pytest.raises(RoomFull):  # ...against its own client always...
        admission.admit("r", client="10.0.0.66")
    rightful = admission.admit("r", client="10.0.0.1")  # ...not against others
    now[0] = 9.0
    with pytest.raises(RoomFull):  # a seat taken over is held for the whole hold
        admission.admit("r", client="10.0.0.66")
    with pytest.raises(CredentialRefused):
        admission.redeem(squatter.participant_id)
    assert admission.redeem(rightful.participant_id) is rightful
    assert changes and set(changes) == {"r"}
    # the host refuses a waiting participant: its seat is free at once
    await create_room(rooms, "big", max_participants=50)
    waiting = admission.admit("big", client="10.0.0.66")
    assert admission.refuse("big", waiting.participant_id)
    assert not admission.refuse("big", waiting.participant_id)
    assert admission.waiting("big") == []
    with pytest.raises(CredentialRefused):
        admission.redeem(waiting.participant_id)
    # one client address holds at most max_pending_per_client waiting grants
    quota = rooms.config.limits.max_pending_per_client
    for _ in range(quota):
        admission.admit("big", client="10.0.0.99")
    with pytest.raises(TooManyPending):
        admission.admit("big", client="10.0.0.99")
    assert admission.admit("big", client="10.0.0.100")  # others are not affected
    now[0] = 20.0  # past pending_hold: the waiting grants expired
    assert admission.admit("big", client="10.0.0.99")


async def test_a_closing_room_admits_nobody() -> None:
    """A room whose close is under way (its members are being told) refuses
    admissions and joins as a closed room does: 404 ``room_not_found``, never
    a grant for a room about to vanish."""
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    try:
        room = sfu.create_room("r", max_participants=2)
        admission = Admission(sfu, clock=ManualClock())
        telling, held = asyncio.Event(), asyncio.Event()

        async def outbox(message: ServerMessage) -> None:
            if type(message).__name__ == "RoomClosed":
                telling.set()
                await held.wait()  # the close waits here, half done

        member = admission.admit("r")
        await admission.join(member.participant_id, outbox)
        early = admission.admit("r")  # admitted before the close began
        closing = asyncio.create_task(room.close("host left"))
        await asyncio.wait_for(telling.wait(), LIVENESS)
        assert room.closed and "r" in sfu.rooms  # under way, not over
        with pytest.raises(RoomNotFound) as during:
            admission.admit("r")
        with pytest.raises(RoomNotFound):
            await admission.join(early.participant_id, outbox)
        held.set()
        await asyncio.wait_for(closing, LIVENESS)
        assert "r" not in sfu.rooms
        with pytest.raises(RoomNotFound) as after:
            admission.admit("r")
        assert during.value.code == after.value.code == "room_not_found"
        assert during.value.http_status == after.value.http_status == 404
    finally:
        await sfu.close()
