"""Issue 21: a participant that makes the server burn CPU is removed for it.

A rogue floods its data channel with messages far over the rate limit: each
one is dropped, but only after the server decrypted, parsed and reassembled
its SCTP packets. That time is charged to the rogue
(:mod:`pysfu.accounting`); past its budget it leaves with ``cpu_budget``
while another room goes on decoding, and its stats show where the time went.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pysfu import SFU, LimitsConfig, ParticipantLeftEvent, SFUConfig

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import PeerFactory

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: A fifth of a core over 3 s: 0.6 s of CPU, while joining costs a
#: participant a few tens of milliseconds.
LIMITS = LimitsConfig(cpu_budget=0.2, cpu_budget_window=3.0)
#: At most this many messages: a server without a budget fails the test.
MAX_SENT = 200_000


async def test_a_cpu_burner_is_removed_and_the_other_room_decodes(
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
        abused.add_listener(
            lambda e: left.append(e) if isinstance(e, ParticipantLeftEvent) else None
        )
        owner = await peers("owner", code=3, publish_video=False).join(abused, "host")
        rogue = await peers("rogue", code=4, publish_video=False).join(abused)
        channel = await rogue.wait_channel()
        await owner.wait_channel()
        stats = sfu.stats()

        payload = "x" * 8000  # under the size limit, far over the rate limit
        sent = 0
        while not left and sent < MAX_SENT and channel.readyState == "open":
            if channel.bufferedAmount > 256 * 1024:
                await asyncio.sleep(0.005)
                continue
            channel.send(payload)
            sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0)
        await eventually(lambda: bool(left), what="the rogue removed")
        assert [(e.participant_id, e.reason) for e in left] == [("rogue", "cpu_budget")]
        assert "rogue" not in abused.members
        assert "owner" in abused.members

        # the other room goes on, and nobody else was charged anything like it
        frames = len(track.patterns)
        await eventually(lambda: len(track.patterns) > frames + 30, what="decoding")
        stats = sfu.stats()
        for room in stats.rooms:
            for member in room.members:
                assert sum(member.cpu_seconds.values()) < LIMITS.cpu_budget * 3.0
        totals = sfu.retired.plus_live(stats)
        assert totals.cpu_seconds["data"] > 0.6  # the rogue's, kept after it left
    finally:
        await sfu.close()
