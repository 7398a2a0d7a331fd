"""Issue 21.1: tiny SCTP chunks cannot make the server do O(n) work each.

aiortc scans every chunk held for reassembly for each new one; pysfu's data
channel guard counted only bytes, so 24,000 one-byte unordered fragments
(0.5 MB) kept the server at 100 % CPU and starved every other room. Now an
association holding too many chunks, or sending unordered fragments on
pysfu's ordered channel, is aborted: the sender's data channel closes, it
gets ``data_too_large``, and its media and seat stay.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_UNORDERED,
    DataChunk,
    tsn_plus_one,
)

from pysfu import SFU

from ..helpers import eventually
from ..peers import Peer, PeerFactory

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: Chunks sent (bounded): past any cap, small enough to send quickly.
SENT = 3_000


async def send_tiny_fragments(peer: Peer, flags: int) -> None:
    """One-byte DATA chunks on the server's channel's stream, none of them
    the last of its message, so the server holds every one."""
    sctp = peer.pc.sctp
    assert sctp is not None and peer.channel is not None
    stream_id = peer.channel.id
    tsn = sctp._local_tsn
    for n in range(SENT):
        if sctp.state == "closed":
            return  # aborted by the server
        chunk = DataChunk(flags=flags if n == 0 else flags & SCTP_DATA_UNORDERED)
        chunk.tsn, tsn = tsn, tsn_plus_one(tsn)
        chunk.stream_id = stream_id
        chunk.stream_seq = 0
        chunk.protocol = 53  # WebRTC binary
        chunk.user_data = b"x"
        await sctp._send_chunk(chunk)
        if n % 20 == 19:
            await asyncio.sleep(0.01)  # let the server read: one event loop


@pytest.mark.parametrize(
    "flags",
    [SCTP_DATA_FIRST_FRAG, SCTP_DATA_FIRST_FRAG | SCTP_DATA_UNORDERED],
    ids=["ordered", "unordered"],
)
async def test_tiny_fragments_abort_only_the_senders_channel(
    sfu: SFU, peers: PeerFactory, flags: int
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    rogue = await peers("rogue", code=3).join(room)
    track = await guest.wait_video_from(host)
    await rogue.wait_channel()
    await guest.wait_channel()

    await send_tiny_fragments(rogue, flags)
    assert rogue.channel is not None
    await eventually(lambda: rogue.channel.readyState == "closed", what="abort")  # type: ignore[union-attr]
    await eventually(lambda: any(e.code == "data_too_large" for e in rogue.errors))
    # the rogue keeps its seat and media; the room goes on
    assert "rogue" in room.members
    frames = len(track.patterns)
    await eventually(lambda: len(track.patterns) > frames + 30, what="media goes on")
    host_seen = rogue.track_from("host", "video")
    assert host_seen is not None
    rogue_frames = host_seen.frames
    await eventually(lambda: host_seen.frames > rogue_frames + 10, what="rogue's media")
    assert guest.channel is not None and guest.channel.readyState == "open"
