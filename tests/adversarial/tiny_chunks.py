"""The tiny-SCTP-chunk attack of issue 21.1, shared by the in-process test
(test_sctp_chunks.py) and the one against the example process
(test_sctp_chunks_app.py): one-byte DATA fragments on the server's channel's
stream, none of them the last of its message, so the server holds every one
it receives for reassembly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc.rtcsctptransport import SCTP_DATA_UNORDERED, DataChunk, tsn_plus_one

from ..helpers import LIVENESS
from ..peers import Peer

#: Chunks sent ahead of what the server has received: unpaced, the flood
#: overflowed the server's socket on a busy machine and the kernel dropped
#: the client's ICE consent answers with the chunks.
WINDOW = 128

#: The highest chunk (counted from the first one sent, -1: none) the server
#: received, given the TSN of the first one.
Received = Callable[[int], int]


def offset(tsn: int, first_tsn: int) -> int:
    """How many chunks after ``first_tsn`` the chunk ``tsn`` is."""
    return (tsn - first_tsn) % 2**32


def received_by_sacks(peer: Peer, limit: int) -> Received:
    """What the server acknowledged to ``peer``, from its SACKs (for a server
    in another process). aiortc's own handling of SACKs is replaced: an
    attacker ignores acknowledgements, and aiortc would scan each SACK's gaps
    (thousands of TSNs it never sent), keeping the client's loop busy."""
    sctp = peer.pc.sctp
    assert sctp is not None
    acknowledged: list[int] = []  # TSNs, cumulative or the end of a gap

    async def note_sack(chunk: Any) -> None:
        acknowledged.append(chunk.cumulative_tsn)
        if chunk.gaps:
            acknowledged.append((chunk.cumulative_tsn + chunk.gaps[-1][1]) % 2**32)
        del acknowledged[:-8]

    sctp._receive_sack_chunk = note_sack  # type: ignore[method-assign]

    def received(first_tsn: int) -> int:
        offsets = [offset(tsn, first_tsn) for tsn in acknowledged]
        return max((o for o in offsets if o < limit), default=-1)

    return received


async def send_tiny_fragments(
    peer: Peer, flags: int, received_by: Received, limit: int
) -> int:
    """One-byte DATA chunks on ``peer``'s channel's stream: the first with
    ``flags``, the others middle fragments (unordered if ``flags`` is).

    Sent, paced by ``received_by`` (at most :data:`WINDOW` ahead), until the
    server aborts the association or says it did (``data_too_large``), or
    ``limit`` chunks: some chunks may be lost and nothing retransmits them,
    so no fixed count is sure to reach the server's cap. Returns the number
    sent.
    """
    sctp = peer.pc.sctp
    assert sctp is not None and peer.channel is not None
    stream_id = peer.channel.id
    first_tsn = sctp._local_tsn

    def aborted() -> bool:
        return sctp.state == "closed" or any(
            e.code == "data_too_large" for e in peer.errors
        )

    tsn = first_tsn
    received = -1
    for n in range(limit):
        waited = 0.0
        while n - received > WINDOW and not aborted() and waited < LIVENESS:
            await asyncio.sleep(0.01)
            waited += 0.01
            received = received_by(first_tsn)
        if aborted() or waited >= LIVENESS:
            return n
        chunk = DataChunk(flags=flags if n == 0 else flags & SCTP_DATA_UNORDERED)
        chunk.tsn, tsn = tsn, tsn_plus_one(tsn)
        chunk.stream_id = stream_id
        chunk.stream_seq = 0
        chunk.protocol = 53  # WebRTC binary
        chunk.user_data = b"x"
        await sctp._send_chunk(chunk)
    return limit
