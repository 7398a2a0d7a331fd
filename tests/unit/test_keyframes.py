"""Keyframe request throttling and the NACK packet history."""

from __future__ import annotations

import asyncio

import pytest

from pysfu.forwarding.history import PacketHistory
from pysfu.forwarding.keyframes import KeyframeRequester

from ..helpers import ManualClock


async def run_ready_callbacks() -> None:
    """Let the loop run what is due (timers included) a few iterations."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_burst_of_requests_sends_one_now_and_one_at_the_interval_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the loop's own clock stands still unless the test moves it: a busy
    # machine pausing this test cannot end the interval in mid-burst
    clock = ManualClock()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", clock)
    sent: list[float] = []
    requester = KeyframeRequester(lambda: sent.append(loop.time()) or True, 0.2)
    try:
        for _ in range(50):
            requester.request()
        assert len(sent) == 1
        clock.advance(0.15)
        await run_ready_callbacks()
        assert len(sent) == 1  # still inside the interval
        clock.advance(0.05)
        await run_ready_callbacks()
        assert len(sent) == 2  # the coalesced one: the last asker is not forgotten
        assert sent[1] - sent[0] == pytest.approx(0.2)
        clock.advance(10)
        await run_ready_callbacks()
        assert len(sent) == 2  # nothing more was asked
        assert (requester.requested, requester.sent) == (50, 2)
    finally:
        requester.close()
        monkeypatch.undo()  # the real clock again before the loop is torn down


async def test_closing_cancels_a_deferred_request() -> None:
    sent: list[int] = []
    requester = KeyframeRequester(lambda: sent.append(1) or True, 0.1)
    requester.request()
    requester.request()
    requester.close()
    await asyncio.sleep(0.2)
    assert sent == [1]


def test_history_returns_only_the_exact_packet() -> None:
    history = PacketHistory(size=4)
    for seq in range(10):
        history.put(ssrc=1, sequence_number=seq, data=bytes([seq]))
    assert history.get(1, 9) == b"\x09"
    assert history.get(1, 5) is None  # overwritten by 9
    assert history.get(2, 9) is None  # another source
