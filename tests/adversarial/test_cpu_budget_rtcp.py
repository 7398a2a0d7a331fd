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
from dataclasses import replace

import pytest

from pysfu import SFU, LimitsConfig, ParticipantLeftEvent, SFUConfig

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import PeerFactory
from .seam_helpers import replay_srtcp

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: 2 % of a core over 10 s (0.2 s of CPU), as test_cpu_budget: reachable on
#: a heavily loaded machine too.
LIMITS = LimitsConfig(cpu_budget=0.02, cpu_budget_window=10.0)
BUDGET = 0.2
#: At most this many copies: a server that does not charge them fails the test.
MAX_SENT = 200_000


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """An RTCP Picture Loss Indication (RFC 4585: PSFB, FMT 1)."""
    return struct.pack("!BBHII", 0x81, 206, 2, sender_ssrc, media_ssrc)


async def test_an_rtcp_flooder_is_removed_and_the_other_room_decodes(
    peers: PeerFactory,
) -> None:
    # consent as browsers do: a test of the budget, not of consent timing
    ice = replace(LOOPBACK, consent_interval=5.0, consent_failures=6)
    sfu = SFU(SFUConfig(ice=ice, limits=LIMITS))
    try:
        watched = sfu.create_room("watched", max_participants=1)
        host = await peers("host", code=1).join(watched, "host")
        viewer = await peers("viewer", code=2, publish_video=False).join(watched)
        track = await viewer.wait_video_from(host)

        abused = sfu.create_room("abused", max_participants=1)
        left: list[ParticipantLeftEvent] = []
        for room in (watched, abused):
            room.add_listener(
                lambda e: (
                    left.append(e) if isinstance(e, ParticipantLeftEvent) else None
                )
            )
        owner = await peers("owner", code=3).join(abused, "host")
        rogue = await peers("rogue", code=4, publish_video=False).join(abused)
        await rogue.wait_video_from(owner)
        media_ssrc = next(
            source.source
            for t in rogue.pc.getTransceivers()
            if t.kind == "video"
            for source in t.receiver.getSynchronizationSources()
        )
        sent = await replay_srtcp(
            rogue.pc, pli(0x5EED, media_ssrc), until=lambda: bool(left), limit=MAX_SENT
        )
        await eventually(lambda: bool(left), what=f"the rogue removed ({sent} sent)")
        assert [(e.participant_id, e.reason) for e in left] == [("rogue", "cpu_budget")]
        assert "rogue" not in abused.members
        assert "owner" in abused.members

        # the other room goes on; nobody else was removed or charged as much
        frames = len(track.patterns)
        await eventually(lambda: len(track.patterns) > frames + 30, what="decoding")
        stats = sfu.stats()
        for room in stats.rooms:
            for member in room.members:
                assert sum(member.cpu_seconds.values()) < BUDGET
        assert [e.participant_id for e in left] == ["rogue"]
        totals = sfu.retired.plus_live(stats)
        # The rogue reached the budget over all its reasons (signalling and
        # data count too); most of it was the flood, kept after it left.
        assert totals.cpu_seconds["rtcp"] > BUDGET / 2
    finally:
        await sfu.close()
