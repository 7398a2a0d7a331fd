"""Issue 21: a participant that makes the server burn CPU is removed for it.

A rogue floods its data channel with messages far over the rate limit: each
one is dropped, but only after the server decrypted, parsed and reassembled
its SCTP packets. That time is charged to the rogue
(:mod:`pysfu.accounting`); past its budget it leaves with ``cpu_budget``
while another room goes on decoding, and its stats show where the time went.
"""

from __future__ import annotations

import asyncio

import pytest

from pysfu import LimitsConfig

from ..peers import PeerFactory
from .budget_helpers import BUDGET, budget_scene

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: At most this many messages: a server without a budget fails the test.
MAX_SENT = 100_000


async def test_a_cpu_burner_is_removed_and_the_other_room_decodes(
    peers: PeerFactory,
) -> None:
    async with budget_scene(peers, owner_publishes_video=False) as scene:
        channel = await scene.rogue.wait_channel()
        await scene.owner.wait_channel()

        payload = "x" * 8000  # under the size limit, far over the rate limit
        sent = 0
        give_up = asyncio.get_running_loop().time() + 120
        while (
            not scene.left
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
        # nor is the owner charged for the rogue's messages relayed to it
        totals = await scene.rogue_removed_others_untouched()
        assert totals.cpu_seconds["data"] > BUDGET  # the rogue's, kept after it left


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
