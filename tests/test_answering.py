"""Client-offered sessions in the library: a WHEP-style viewer's slots follow
the room's publishers (host first, then in order), on one continuous stream."""

from __future__ import annotations

import pytest
from aiortc import RTCSessionDescription

from pysfu import SFU, BadOffer, ClientOffer, Purpose, Room
from pysfu.events import RoomEvent
from pysfu.signalling import ServerMessage

from .helpers import eventually
from .peers import Peer, PeerFactory, ReceivedTrack
from .whip_client import make_offer, without_known_codecs


async def _discard(message: ServerMessage) -> None:
    pass


async def offer_into(
    room: Room, peer: Peer, purpose: Purpose, role: str = "participant"
) -> None:
    """``peer`` joins ``room`` by offering to publish (WHIP) or watch (WHEP)."""
    sdp = await make_offer(peer, watch=purpose is Purpose.WATCH)
    offer = ClientOffer(sdp, purpose)
    participant = await room.join(peer.name, role, _discard, offer=offer)
    assert participant.answerer is not None and participant.answerer.answer
    await peer.pc.setRemoteDescription(
        RTCSessionDescription(participant.answerer.answer, "answer")
    )


async def showing(track: ReceivedTrack, code: int, frames: int = 10) -> None:
    start = len(track.patterns)
    await eventually(
        lambda: sum(1 for c, _ in track.patterns[start:] if c == code) >= frames,
        what=f"frames of {code}",
    )


async def test_a_slot_follows_the_rooms_publishers(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r", max_participants=3, close_when_host_leaves=False)
    first, second = peers("first", 1), peers("second", 2)
    await offer_into(room, first, Purpose.PUBLISH)
    await offer_into(room, second, Purpose.PUBLISH)
    viewer = peers("viewer", 9, publish_video=False, publish_audio=False)
    await offer_into(room, viewer, Purpose.WATCH)
    video = await viewer.wait_track("whep", "video")
    await showing(video, first.code)  # the earliest publisher, no host yet

    await first.pc.close()  # its tracks end: the slot switches to the next one
    await showing(video, second.code)

    host = peers("host", 3)
    await offer_into(room, host, Purpose.PUBLISH, "host")
    await showing(video, host.code)  # the host is preferred once it publishes
    # one track all along: the viewer never saw a second one
    assert [t.kind for t in viewer.received.values()] == ["audio", "video"]
    member = room.members["viewer"]
    assert set(member.subscriptions) == {"host/audio", "host/video"}


async def test_a_bad_offer_leaves_the_room_unchanged(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r", max_participants=2)
    events: list[RoomEvent] = []
    room.add_listener(events.append)
    publisher = peers("publisher", 1)
    offer = await make_offer(publisher)
    for sdp, why in (
        ("garbage", "no audio or video"),
        (without_known_codecs(offer), "no codec"),
        (offer, "receives"),  # a publisher's offer, for watching
    ):
        purpose = Purpose.WATCH if why == "receives" else Purpose.PUBLISH
        with pytest.raises(BadOffer, match=why):
            await room.join(
                "p", "participant", _discard, offer=ClientOffer(sdp, purpose)
            )
    assert not room.members and not events
