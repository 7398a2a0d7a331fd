"""The scene of the CPU budget tests (``test_cpu_budget*.py``, issue 21): a
watched room whose viewer decodes its host, and an abused room where a
rogue makes the server burn CPU until its budget removes it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from pysfu import SFU, LimitsConfig, ParticipantLeftEvent, Room, SFUConfig
from pysfu.stats import Totals

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import Peer, PeerFactory, ReceivedTrack

#: 2 % of a core over 10 s: 0.2 s of CPU, while joining costs a participant
#: a few tens of milliseconds. Small, so that the budget can be reached on a
#: heavily loaded machine too, where this process (server and clients) gets
#: a small share of a core.
LIMITS = LimitsConfig(cpu_budget=0.02, cpu_budget_window=10.0)
BUDGET = 0.2


@dataclass
class BudgetScene:
    """Two rooms of one SFU: ``watched`` (its viewer's ``track`` from its
    host) and ``abused`` (``owner``, its host, and ``rogue``); ``left``
    collects every ParticipantLeftEvent of both."""

    sfu: SFU
    watched: Room
    track: ReceivedTrack
    abused: Room
    owner: Peer
    rogue: Peer
    left: list[ParticipantLeftEvent]

    async def rogue_removed_others_untouched(self, what: str = "") -> Totals:
        """Wait until the rogue leaves for ``cpu_budget``; check that it was
        the only one, the owner stayed, the watched room still decodes and
        nobody else came near the budget. The SFU's totals (the rogue's
        charges kept after it left)."""
        await eventually(lambda: bool(self.left), what=what or "the rogue removed")
        assert [(e.participant_id, e.reason) for e in self.left] == [
            ("rogue", "cpu_budget")
        ]
        assert "rogue" not in self.abused.members
        assert "owner" in self.abused.members

        # the other room goes on; nobody else was removed or charged as much
        frames = len(self.track.patterns)
        await eventually(
            lambda: len(self.track.patterns) > frames + 30, what="decoding"
        )
        stats = self.sfu.stats()
        for room in stats.rooms:
            for member in room.members:
                assert sum(member.cpu_seconds.values()) < BUDGET
        assert [e.participant_id for e in self.left] == ["rogue"]
        return self.sfu.retired.plus_live(stats)


@contextlib.asynccontextmanager
async def budget_scene(
    peers: PeerFactory, *, owner_publishes_video: bool
) -> AsyncIterator[BudgetScene]:
    """A :class:`BudgetScene` under :data:`LIMITS`, every peer joined (the
    rogue receives the owner's video if it publishes one); the SFU is
    closed afterwards."""
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
        owner = await peers("owner", code=3, publish_video=owner_publishes_video).join(
            abused, "host"
        )
        rogue = await peers("rogue", code=4, publish_video=False).join(abused)
        yield BudgetScene(sfu, watched, track, abused, owner, rogue, left)
    finally:
        await sfu.close()
