"""Issue 21.6: a participant flooding RTCP is charged for it and removed.

A rogue sends one valid SRTCP packet (a PLI for the track it receives)
again and again: each copy costs the server the receive path's work and a
decryption attempt that libsrtp's replay check refuses, before any RTCP
handling (which was the only part charged). That time is now charged to the
rogue (``rtcp``, :func:`pysfu._aiortc.transports.meter_dtls_receive`); past
its budget it leaves with ``cpu_budget`` while another room goes on decoding.
"""

from __future__ import annotations

import struct

import pytest

from ..peers import PeerFactory
from .budget_helpers import BUDGET, budget_scene
from .seam_helpers import replay_srtcp

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: At most this many copies: a server that does not charge them fails the test.
MAX_SENT = 200_000


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """An RTCP Picture Loss Indication (RFC 4585: PSFB, FMT 1)."""
    return struct.pack("!BBHII", 0x81, 206, 2, sender_ssrc, media_ssrc)


async def test_an_rtcp_flooder_is_removed_and_the_other_room_decodes(
    peers: PeerFactory,
) -> None:
    async with budget_scene(peers, owner_publishes_video=True) as scene:
        rogue = scene.rogue
        await rogue.wait_video_from(scene.owner)
        media_ssrc = next(
            source.source
            for t in rogue.pc.getTransceivers()
            if t.kind == "video"
            for source in t.receiver.getSynchronizationSources()
        )
        sent = await replay_srtcp(
            rogue.pc,
            pli(0x5EED, media_ssrc),
            until=lambda: bool(scene.left),
            limit=MAX_SENT,
        )
        totals = await scene.rogue_removed_others_untouched(
            f"the rogue removed ({sent} sent)"
        )
        # The rogue reached the budget over all its reasons (signalling and
        # data count too); most of it was the flood, kept after it left.
        assert totals.cpu_seconds["rtcp"] > BUDGET / 2
