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

#: 2 % of a core over 10 s: 0.2 s of CPU, while joining costs a participant
#: a few tens of milliseconds. Small, so that the budget can be reached on a
#: heavily loaded machine too, where this process (server and clients) gets
#: a small share of a core.
LIMITS = LimitsConfig(cpu_budget=0.02, cpu_budget_window=10.0)
BUDGET = 0.2
#: At most this many messages: a server without a budget fails the test.
MAX_SENT = 100_000


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
        for room in (watched, abused):
            room.add_listener(
                lambda e: (
                    left.append(e) if isinstance(e, ParticipantLeftEvent) else None
                )
            )
        owner = await peers("owner", code=3, publish_video=False).join(abused, "host")
        rogue = await peers("rogue", code=4, publish_video=False).join(abused)
        channel = await rogue.wait_channel()
        await owner.wait_channel()
        stats = sfu.stats()

        payload = "x" * 8000  # under the size limit, far over the rate limit
        sent = 0
        give_up = asyncio.get_running_loop().time() + 120
        while (
            not left
            and sent < MAX_SENT
            and channel.readyState == "open"
            and asyncio.get_running_loop().time() < give_up
        ):
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

        # the other room goes on; nobody else was removed, and the owner is
        # not charged for the rogue's messages relayed to it
        frames = len(track.patterns)
        await eventually(lambda: len(track.patterns) > frames + 30, what="decoding")
        stats = sfu.stats()
        for room in stats.rooms:
            for member in room.members:
                assert sum(member.cpu_seconds.values()) < BUDGET
        assert [e.participant_id for e in left] == ["rogue"]
        totals = sfu.retired.plus_live(stats)
        assert totals.cpu_seconds["data"] > BUDGET  # the rogue's, kept after it left
    finally:
        await sfu.close()


def test_the_app_takes_the_budget_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pysfu serve --cpu-budget`` (and ``PYSFU_CPU_BUDGET``): a share of a
    core, ``off`` to measure only; anything else is refused at start-up."""
    from pysfu.app.server import parse_args

    assert parse_args([]).cpu_budget == LimitsConfig().cpu_budget == 0.5
    assert parse_args(["--cpu-budget=0.02"]).cpu_budget == 0.02
    assert parse_args(["--cpu-budget=off"]).cpu_budget is None
    monkeypatch.setenv("PYSFU_CPU_BUDGET", "0.1")
    assert parse_args([]).cpu_budget == 0.1
    for wrong in ("0", "-1", "2", "half"):
        with pytest.raises(SystemExit):
            parse_args([f"--cpu-budget={wrong}"])
