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
from dataclasses import replace

import pytest
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_UNORDERED,
    DataChunk,
    RTCSctpTransport,
    tsn_plus_one,
)

from pysfu import SFU, SFUConfig

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, eventually
from ..peers import Peer, PeerFactory

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: At most this many chunks are sent: far past the server's cap, so a server
#: without one fails the test instead of keeping it busy for ever.
MAX_SENT = 30_000
#: Chunks sent ahead of what the server has received: unpaced, the flood
#: overflowed the server's socket on a busy machine and the kernel dropped
#: the client's ICE consent answers with the chunks.
WINDOW = 128


def received_by(server: RTCSctpTransport, first_tsn: int) -> int:
    """The highest chunk (counted from ``first_tsn``) the server received.

    Read from the server's association in this process, not from its SACKs:
    on a busy machine they reach the client seconds late."""
    tsns = [server._last_received_tsn, *server._sack_misordered]
    offsets = [(tsn - first_tsn) % 2**32 for tsn in tsns if tsn is not None]
    return max((o for o in offsets if o < MAX_SENT), default=-1)


async def send_tiny_fragments(peer: Peer, server: RTCSctpTransport, flags: int) -> int:
    """One-byte DATA chunks on the server's channel's stream, none of them
    the last of its message, so the server holds every one it receives.

    Sent, paced by what ``server`` (the server's end) received, until it
    aborts the association or says it did (``data_too_large``): some chunks
    may be lost and nothing retransmits them, so no fixed count is sure to
    reach the cap. Returns the number sent.
    """
    sctp = peer.pc.sctp
    assert sctp is not None and peer.channel is not None
    stream_id = peer.channel.id
    first_tsn = sctp._local_tsn

    async def ignore_sack(chunk: object) -> None:
        # an attacker ignores acknowledgements; aiortc's handling would scan
        # each SACK's gaps (thousands of TSNs it never sent), which on a busy
        # machine kept the test's one event loop, the server's too, behind
        pass

    def aborted() -> bool:
        return sctp.state == "closed" or any(
            e.code == "data_too_large" for e in peer.errors
        )

    sctp._receive_sack_chunk = ignore_sack  # type: ignore[method-assign]
    tsn = first_tsn
    received = -1
    for n in range(MAX_SENT):
        waited = 0.0
        while n - received > WINDOW and not aborted() and waited < LIVENESS:
            await asyncio.sleep(0.01)
            waited += 0.01
            received = received_by(server, first_tsn)
        if aborted() or waited >= LIVENESS:
            return n
        chunk = DataChunk(flags=flags if n == 0 else flags & SCTP_DATA_UNORDERED)
        chunk.tsn, tsn = tsn, tsn_plus_one(tsn)
        chunk.stream_id = stream_id
        chunk.stream_seq = 0
        chunk.protocol = 53  # WebRTC binary
        chunk.user_data = b"x"
        await sctp._send_chunk(chunk)
    return MAX_SENT


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
    await send_tiny_fragments(rogue, server, flags)
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
