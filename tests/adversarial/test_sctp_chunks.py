"""Issue 21.1: tiny SCTP chunks cannot make the server do O(n) work each.

aiortc scans every chunk held for reassembly for each new one; pysfu's data
channel guard counted only bytes, so 24,000 one-byte unordered fragments
(0.5 MB) kept the server at 100 % CPU and starved every other room. Now an
association holding too many chunks, or sending unordered fragments on
pysfu's ordered channel, is aborted: the sender's data channel closes, it
gets ``data_too_large``, and its media and seat stay.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_UNORDERED,
    RTCSctpTransport,
)

from pysfu import SFU, SFUConfig

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import PeerFactory
from .tiny_chunks import Received, offset, received_by_sacks, send_tiny_fragments

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: At most this many chunks are sent: far past the server's cap, so a server
#: without one fails the test instead of keeping it busy for ever.
MAX_SENT = 30_000


def received_by(server: RTCSctpTransport) -> Received:
    """The highest chunk the server received, read from the server's
    association in this process, not from its SACKs: on a busy machine they
    reach the client seconds late (the test's one event loop runs both)."""

    def received(first_tsn: int) -> int:
        tsns = [server._last_received_tsn, *server._sack_misordered]
        offsets = [offset(tsn, first_tsn) for tsn in tsns if tsn is not None]
        return max((o for o in offsets if o < MAX_SENT), default=-1)

    return received


@pytest.mark.parametrize(
    "flags",
    [SCTP_DATA_FIRST_FRAG, SCTP_DATA_FIRST_FRAG | SCTP_DATA_UNORDERED],
    ids=["ordered", "unordered"],
)
async def test_tiny_fragments_abort_only_the_senders_channel(
    peers: PeerFactory, flags: int
) -> None:
    # The server reads one datagram of a connection's socket per event loop
    # turn (aioice's per-connection sockets, unlike the shared port's STUN
    # first), so the rogue's consent answers wait behind its own chunks: on
    # a loaded machine, seconds each, and with the default 10 s deadline the
    # server dropped the rogue for consent, a test of something else. A
    # browser's deadline, 30 s, outlasts the flood.
    ice = replace(LOOPBACK, consent_interval=5.0, consent_failures=6)
    sfu = SFU(SFUConfig(ice=ice))
    try:
        await flood_and_recover(sfu, peers, flags)
    finally:
        await sfu.close()


async def flood_and_recover(sfu: SFU, peers: PeerFactory, flags: int) -> None:
    room = sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    # a viewer: three publishers' encoders and decoders in one process left
    # a loaded machine too little CPU for anything else
    guest = await peers("guest", code=2, publish_video=False).join(room)
    rogue = await peers("rogue", code=3).join(room)
    track = await guest.wait_video_from(host)
    await rogue.wait_channel()
    await guest.wait_channel()

    member = room.members["rogue"]
    server = member.pc.sctp
    assert server is not None and member.data is not None
    received_by_sacks(rogue, MAX_SENT)  # (only to ignore them: see there)
    await send_tiny_fragments(rogue, flags, received_by(server), MAX_SENT)
    await eventually(
        lambda: any(e.code == "data_too_large" for e in rogue.errors),
        what="data_too_large",
    )
    # the association is aborted: the server's end of the rogue's channel is
    # closed. (The client's end closes when the ABORT reaches it: one packet,
    # never retransmitted, that a loaded machine's kernel may drop from the
    # rogue's socket, read one datagram per event loop turn; seen in CI.)
    await eventually(lambda: not member.data.open, what="abort")  # type: ignore[union-attr]
    assert server.state == "closed"
    # the rogue keeps its seat and media; the room goes on
    assert "rogue" in room.members
    frames = len(track.patterns)
    await eventually(lambda: len(track.patterns) > frames + 30, what="media goes on")
    host_seen = rogue.track_from("host", "video")
    assert host_seen is not None
    rogue_frames = host_seen.frames
    await eventually(lambda: host_seen.frames > rogue_frames + 10, what="rogue's media")
    assert guest.channel is not None and guest.channel.readyState == "open"
