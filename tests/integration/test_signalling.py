"""Signalling: the ICE-password capability, bad input, room rules."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

import pysfu.endpoint
from pysfu import (
    SFU,
    DuplicateParticipant,
    HostTaken,
    RoomClosedError,
    RoomExists,
    RoomFull,
    RoomNotFound,
)
from pysfu._aiortc import configure_ice
from pysfu.ratelimit import TokenBucket
from pysfu.signalling import Answer, Error, MemorySignalling, Offer
from pysfu.signalling.adapter import MAX_MESSAGE_LENGTH, deliver_json

from ..helpers import ManualClock, eventually
from ..peers import PeerFactory

UFRAG, PASSWORD = "hostufrag", "ServerSecret0123456789abc"


@contextlib.contextmanager
def signalling_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[ManualClock]:
    """Participants that join inside the block get a signalling rate limit
    driven by a :class:`ManualClock`: a slow machine cannot refill their
    bucket in the middle of a burst."""
    clock = ManualClock()
    with monkeypatch.context() as patch:
        patch.setattr(
            pysfu.endpoint,
            "TokenBucket",
            functools.partial(TokenBucket, clock=clock),
        )
        yield clock


def wrong_password(sdp: str) -> str:
    return re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:" + "x" * 24, sdp)


async def test_server_uses_the_ice_credentials_it_was_given(sfu: SFU) -> None:
    room = sfu.create_room("r1")
    client = await MemorySignalling().join(
        room, "host", "host", ice_username_fragment=UFRAG, ice_password=PASSWORD
    )
    offer = await client.receive_type(Offer, 10)
    assert f"a=ice-ufrag:{UFRAG}" in offer.sdp
    assert f"a=ice-pwd:{PASSWORD}" in offer.sdp
    assert "a=ice-lite" in offer.sdp  # the server never nominates on its own


async def test_a_peer_without_the_server_password_never_connects(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    await peers("host", code=1).join(room, "host")
    intruder = await peers("intruder", code=2, offer_filter=wrong_password).join(
        room, ice_password=PASSWORD
    )
    # the intruder answered and runs ICE, with the wrong server password
    await eventually(lambda: intruder.answers_sent >= 1, what="intruder's answer")
    await eventually(lambda: "host/video" in room.members["host"].publications)
    await asyncio.sleep(6)
    server_side = room.members["intruder"].pc
    assert server_side.connectionState != "connected"
    assert intruder.pc.connectionState != "connected"
    assert intruder.received == {} or all(
        t.frames == 0 for t in intruder.received.values()
    )
    downtracks = room.members["host"].publications["host/video"].downtracks
    assert all(d.stats.packets_sent == 0 for d in downtracks)


async def test_bad_answer_gets_an_error_and_a_good_one_still_works(sfu: SFU) -> None:
    room = sfu.create_room("r1")
    client = await MemorySignalling().join(room, "host", "host")
    offer = await client.receive_type(Offer, 10)
    await client.send(Answer(sdp="v=0\r\nthis is not sdp\r\n"))
    error = await client.receive_type(Error, 5)
    assert error.code == "bad_sdp"

    pc = RTCPeerConnection()
    await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
    configure_ice(pc, host_addresses=["127.0.0.1"])
    await pc.setLocalDescription(await pc.createAnswer())
    await client.send(Answer(sdp=pc.localDescription.sdp))
    await eventually(lambda: pc.connectionState == "connected", what="connection")
    await client.send(Answer(sdp=pc.localDescription.sdp))  # nothing was offered
    assert (await client.receive_type(Error, 5)).code == "unexpected_answer"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"sdp": "x"}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "answer", "sdp": 5}', "bad_message"),
        ('{"type": "candidate", "candidate": "garbage"}', "bad_candidate"),
        (
            '{"type": "candidate", "candidate": "1 1 udp x", "sdp_mline_index": "0"}',
            "bad_message",
        ),
        ('{"type": "answer", "sdp": "' + "a" * MAX_MESSAGE_LENGTH + '"}', "too_large"),
        ('{"type": "answer", "sdp": "v=0"}', "unexpected_answer"),
    ],
)
async def test_malformed_messages_get_specific_errors(
    sfu: SFU, text: str, code: str
) -> None:
    room = sfu.create_room("r1")
    client = await MemorySignalling().join(room, "host", "host")
    await client.receive_type(Offer, 10)
    await client.send(Answer(sdp="garbage"))  # leave the offer pending: still bad_sdp
    await client.receive_type(Error, 5)
    if code == "unexpected_answer":
        room.members["host"].negotiator._awaiting_answer = False  # as after an answer
    await deliver_json(client.participant, text)
    assert (await client.receive_type(Error, 5)).code == code
    assert "host" in room.members and not room.closed


async def test_junk_in_one_room_does_not_disturb_another(
    sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = sfu.create_room("live")
    host = await peers("host", code=1).join(live, "host")
    guest = await peers("guest", code=2).join(live)
    other = sfu.create_room("other")
    with signalling_clock(monkeypatch):  # no refill while the flood is delivered
        attacker = await MemorySignalling().join(other, "attacker", "host")
    track = await guest.wait_video_from(host)
    before = len(track.patterns)
    for text in [
        "{",
        '{"type": "offer", "sdp": "v=0"}',
        '{"type": "answer", "sdp": "v=0"}',
    ] * 30:
        await deliver_json(attacker.participant, text)
    await eventually(
        lambda: len(track.patterns) > before + 30, what="frames keep flowing"
    )
    messages = [attacker.inbox.get_nowait() for _ in range(attacker.inbox.qsize())]
    codes = [m.code for m in messages if isinstance(m, Error)]
    burst = sfu.config.limits.message_burst
    # the burst is answered message by message, then the flood is cut off
    assert set(codes[:burst]) == {"bad_json", "unknown_type", "bad_sdp"}
    assert codes[burst:] == ["rate_limited"]
    assert "live" in sfu.rooms and len(live.members) == 2


async def test_the_rate_limit_refills(
    sfu: SFU, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = sfu.create_room("r1")
    with signalling_clock(monkeypatch) as clock:
        client = await MemorySignalling().join(room, "host", "host")
    burst = sfu.config.limits.message_burst
    rate = sfu.config.limits.messages_per_second
    for _ in range(burst + 5):
        await deliver_json(client.participant, "{")
    clock.advance(1.0)  # refills 20 tokens at the default 20/s
    for _ in range(int(rate) + 1):
        await deliver_json(client.participant, '{"type": "dance"}')
    codes = [m.code for m in client.inbox._queue if isinstance(m, Error)]  # type: ignore[attr-defined]
    assert codes[:burst] == ["bad_json"] * burst
    # told once while the clock stood still, once more a second later
    assert codes[burst:] == ["rate_limited"] + ["unknown_type"] * int(rate) + [
        "rate_limited"
    ]


async def test_malformed_ice_credentials_are_refused_before_admission(sfu: SFU) -> None:
    room = sfu.create_room("r1")
    with pytest.raises(ValueError, match="ice-char"):
        await MemorySignalling().join(room, "host", "host", ice_password="has spaces")
    assert room.members == {}


async def test_room_rules(sfu: SFU) -> None:
    room = sfu.create_room("r1", max_participants=1)
    with pytest.raises(RoomExists):
        sfu.create_room("r1")
    with pytest.raises(RoomNotFound):
        sfu.get_room("nope")
    signalling = MemorySignalling()
    await signalling.join(room, "host", "host")
    with pytest.raises(HostTaken):
        await signalling.join(room, "host2", "host")
    await signalling.join(room, "p1")
    with pytest.raises(DuplicateParticipant):
        await signalling.join(room, "p1")
    with pytest.raises(RoomFull):
        await signalling.join(room, "p2")
    assert set(room.members) == {"host", "p1"}
    await room.close()
    with pytest.raises(RoomClosedError):
        await signalling.join(room, "p3")
