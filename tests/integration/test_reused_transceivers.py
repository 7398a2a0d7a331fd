"""A subscriber's transceiver whose track ended is reused for the next
track of its kind (``SFUConfig.reuse_transceivers``), except for clients
that cannot receive on it again: aiortc ends a receiver for good on the
RTCP BYE that ends its track, and fires no ``track`` event for a section
that receives again (see docs/how-to/tested-clients.md).
"""

from __future__ import annotations

import asyncio

from pysfu import SFU, SFUConfig

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, eventually
from ..peers import Peer, PeerFactory, like_a_browser


def video_sections(peer: Peer) -> int:
    """How many video m-lines the peer's connection has."""
    return sum(1 for t in peer.pc.getTransceivers() if t.kind == "video")


async def test_an_aiortc_subscriber_sees_the_next_publisher_after_one_left(
    peers: PeerFactory,
) -> None:
    # reuse is on (the default): the aiortc host must still see the newcomer
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    try:
        room = sfu.create_room("r")
        host = await peers("host", code=1).join(room, "host")
        first = await peers("first", code=2).join(room)
        await host.wait_video_from(first)
        await room.members["first"].leave()
        await first.close()
        gone = host.track_from("first", "video")
        assert gone is not None
        await gone.ended.wait()
        sections = video_sections(host)

        second = await peers("second", code=3).join(room)
        track = await host.wait_video_from(second)  # decoded: the pattern's code
        assert track.codes() == {3}
        await host.wait_audio_from(second)
        # a new section: the ended one stays inactive
        assert video_sections(host) == sections + 1
    finally:
        await sfu.close()


async def inbound_packets(peer: Peer, mid: str) -> int:
    """RTP packets the peer's receiver on section ``mid`` counted."""
    transceiver = next(t for t in peer.pc.getTransceivers() if t.mid == mid)
    stats = await transceiver.receiver.getStats()
    return sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")


async def packets_grow(peer: Peer, mid: str, more: int) -> None:
    """Wait until the receiver on ``mid`` counted ``more`` more packets."""
    target = await inbound_packets(peer, mid) + more

    async def grown() -> None:
        while await inbound_packets(peer, mid) < target:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(grown(), LIVENESS)


async def test_aiortc_still_cannot_play_a_reused_section(peers: PeerFactory) -> None:
    """Why aiortc clients get new sections: an aiortc host whose answers
    pass for a browser's gets the newcomer's video on the section that
    carried the first guest's, and plays none of it. If this fails, aiortc
    learnt to receive on a reused section: clients recognised as aiortc
    could reuse them too (see made_by_aiortc)."""
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    try:
        room = sfu.create_room("r")
        host = await peers("host", code=1, answer_filter=like_a_browser).join(
            room, "host"
        )
        first = await peers("first", code=2).join(room)
        await host.wait_video_from(first)
        section = room.members["host"].subscriptions["first/video"].transceiver
        await room.members["first"].leave()
        await first.close()
        gone = host.track_from("first", "video")
        assert gone is not None
        await gone.ended.wait()  # the BYE stopped the receiver's decoder
        sections = video_sections(host)
        assert section.mid is not None

        await peers("second", code=3).join(room)
        await eventually(
            lambda: "second/video" in room.members["host"].subscriptions,
            what="the newcomer's video forwarded to the host",
        )
        assert room.members["host"].subscriptions["second/video"].transceiver is section
        # the newcomer's video reaches the host's receiver on that section
        await packets_grow(host, section.mid, 100)
        # pysfu announced the new track on the section, on the same SSRC ...
        offer = host.pc.remoteDescription.sdp
        media = offer.split(f"a=mid:{section.mid}\r\n")[1].split("\r\nm=")[0]
        assert "a=msid:second second/video" in media.split("\r\n")
        receiver = next(t for t in host.pc.getTransceivers() if t.mid == section.mid)
        stats = await receiver.receiver.getStats()
        assert len([s for s in stats.values() if s.type == "inbound-rtp"]) == 1
        # ... and the packets arrive, yet no track shows them: aiortc keeps
        # the ended track of the first guest and fires no track event
        assert receiver.receiver.track.id == "first/video"
        assert receiver.receiver.track.readyState == "ended"
        assert host.track_from("second", "video") is None
        assert video_sections(host) == sections
        assert gone.codes() == {2}
    finally:
        await sfu.close()
