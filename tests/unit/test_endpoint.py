"""The signalling rate-limit gate shared by Participant and RemoteParticipant,
and the count of participants the server removed."""

from __future__ import annotations

from pysfu import SFU, LimitsConfig
from pysfu.endpoint import ClientEndpoint
from pysfu.errors import SignallingError
from pysfu.messages import ClientMessage, Leave
from pysfu.stats import ParticipantStats, Totals
from pysfu.workers.codec import add_totals, totals_to_json

from ..helpers import ManualClock


class Recorder(ClientEndpoint):
    def __init__(self, limits: LimitsConfig, clock: ManualClock) -> None:
        super().__init__(limits, clock)
        self.handled: list[ClientMessage] = []
        self.refused: list[str] = []

    async def handle_unlimited(self, message: ClientMessage) -> None:
        self.handled.append(message)

    async def refuse(self, error: SignallingError) -> None:
        self.refused.append(error.code)


async def test_a_burst_passes_then_one_error_a_second() -> None:
    clock = ManualClock()
    gate = Recorder(LimitsConfig(messages_per_second=2, message_burst=3), clock)
    for _ in range(6):
        await gate.handle(Leave())
    assert len(gate.handled) == 3
    assert gate.refused == ["rate_limited"]  # once for the three dropped
    clock.now += 1.0  # two tokens back, and the next warning allowed
    for _ in range(3):
        await gate.handle(Leave())
    assert len(gate.handled) == 5
    assert gate.refused == ["rate_limited"] * 2


def test_removals_are_counted_by_reason_and_cross_the_pipe() -> None:
    sfu = SFU()
    stats = ParticipantStats(
        participant_id="p",
        role="participant",
        connection_state="closed",
        published=(),
        subscribed=(),
        signalling_errors=0,
        malformed_packets=0,
    )
    sfu.record_departure(stats, "cpu_budget")
    sfu.record_departure(stats, "left")
    assert sfu.retired.participants_left == 2
    assert sfu.retired.participants_removed == {"cpu_budget": 1}
    assert sfu.totals().participants_removed == {"cpu_budget": 1}
    pool_total = Totals()
    for _ in range(2):  # two workers
        add_totals(pool_total, totals_to_json(sfu.totals()))
    assert pool_total.participants_removed == {"cpu_budget": 2}
