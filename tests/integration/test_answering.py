"""Client-offered sessions in the library: a WHEP-style viewer's slots follow
the room's publishers (host first, then in order), on one continuous stream."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCSessionDescription

from pysfu import SFU, BadOffer, ClientOffer, Purpose, Room
from pysfu.events import RoomEvent
from pysfu.signalling import ServerMessage

from ..helpers import eventually
from ..peers import Peer, PeerFactory, ReceivedTrack
from ..whip_client import make_offer, without_known_codecs


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
        # a bare flag where aiortc reads a number made its codec matching raise
        (
            offer.replace("packetization-mode=1", "packetization-mode", 1),
            "'packetization-mode' of payload type .* has no numeric value",
        ),
        (offer, "receives"),  # a publisher's offer, for watching
    ):
        purpose = Purpose.WATCH if why == "receives" else Purpose.PUBLISH
        with pytest.raises(BadOffer, match=why):
            await room.join(
                "p", "participant", _discard, offer=ClientOffer(sdp, purpose)
            )
    assert not room.members and not events


#: What a stock Chromium 156 offers as a WHEP viewer (recvonly video and
#: audio, no setCodecPreferences): payload types 35-63 as well as 96-127,
#: VP9 in four profiles, AV1 in two.
CHROMIUM_OFFER = Path(__file__).parents[1] / "sdp" / "chromium-156-whep-offer.sdp"


def formats_by_section(sdp: str) -> list[dict[int, tuple[str, dict[str, str]]]]:
    """Per m-section in order: payload type -> (rtpmap, fmtp parameters)."""
    sections = []
    for section in sdp.split("\r\nm=")[1:]:
        lines = section.split("\r\n")
        listed = [int(pt) for pt in lines[0].split()[3:]]
        rtpmap = {
            int(line[9:].split(" ")[0]): line.split(" ", 1)[1].lower()
            for line in lines
            if line.startswith("a=rtpmap:")
        }
        fmtp = {
            int(line[7:].split(" ")[0]): dict(
                p.split("=", 1) for p in line.split(" ", 1)[1].split(";") if "=" in p
            )
            for line in lines
            if line.startswith("a=fmtp:")
        }
        assert len(listed) == len(set(listed)), f"duplicate payload types {listed}"
        sections.append({pt: (rtpmap[pt], fmtp.get(pt, {})) for pt in listed})
    return sections


@pytest.mark.parametrize("purpose", [Purpose.WATCH, Purpose.PUBLISH])
async def test_an_answer_to_chromium_uses_only_the_offers_payload_types(
    sfu: SFU, purpose: Purpose
) -> None:
    """Chromium rejects an answer with a payload type twice, or one its offer
    has not, or a format its offer gave another number: every payload type
    of pysfu's answer is one of the offer's, with the offer's rtpmap and fmtp
    (VP9 profile 2 is not profile 0)."""
    offer = CHROMIUM_OFFER.read_text().replace("\n", "\r\n")
    if purpose is Purpose.PUBLISH:  # as Chromium's WHIP offer: same codecs
        offer = offer.replace("a=recvonly", "a=sendonly")
    room = sfu.create_room("r", max_participants=2)
    participant = await room.join(
        "chromium", "participant", _discard, offer=ClientOffer(offer, purpose)
    )
    assert participant.answerer is not None and participant.answerer.answer
    offered = formats_by_section(offer)
    answered = formats_by_section(participant.answerer.answer)
    assert len(answered) == len(offered) == 2
    for mine, theirs in zip(answered, offered, strict=True):
        for pt, (rtpmap, parameters) in mine.items():
            assert pt in theirs, f"payload type {pt} ({rtpmap}) was not offered"
            assert (rtpmap, parameters) == theirs[pt], f"payload type {pt} changed"
    video, audio = answered
    assert {r for r, _ in video.values()} == {
        "vp8/90000",
        "vp9/90000",
        "h264/90000",
        "av1/90000",
        "rtx/90000",
    }
    vp9 = [p for r, p in video.values() if r == "vp9/90000"]
    assert vp9 == [{"profile-id": "0"}]  # the only VP9 profile pysfu takes
    assert {r for r, _ in audio.values()} >= {"opus/48000/2"}
