"""Keyframe request throttling and the NACK packet history."""

from __future__ import annotations

import asyncio

import pytest

from pysfu.forwarding.history import PacketHistory
from pysfu.forwarding.keyframes import KeyframeRequester

from ..helpers import ManualTimers


def test_a_burst_of_requests_sends_one_now_and_one_at_the_interval_end() -> None:
    # the clock stands still unless the test moves it: a busy machine pausing
    # this test cannot end the interval in mid-burst
    timers = ManualTimers()
    sent: list[float] = []
    requester = KeyframeRequester(
        lambda: sent.append(timers()) or True, 0.25, timers, timers.call_at
    )
    for _ in range(50):
        requester.request()
    assert len(sent) == 1
    timers.advance(0.125)  # binary fractions: the sums are exact
    assert len(sent) == 1  # still inside the interval
    timers.advance(0.125)
    assert len(sent) == 2  # the coalesced one: the last asker is not forgotten
    assert sent[1] - sent[0] == pytest.approx(0.25)
    timers.advance(10)
    assert len(sent) == 2  # nothing more was asked
    assert (requester.requested, requester.sent) == (50, 2)


def test_closing_cancels_a_deferred_request() -> None:
    timers = ManualTimers()
    sent: list[int] = []
    requester = KeyframeRequester(
        lambda: sent.append(1) or True, 0.1, timers, timers.call_at
    )
    requester.request()
    requester.request()
    requester.close()
    timers.advance(0.2)
    assert sent == [1]


async def test_the_default_scheduler_runs_on_the_event_loop() -> None:
    """Without a clock and scheduler given: time.monotonic and the running
    loop (what the edge passes in production)."""
    sent: list[int] = []
    requester = KeyframeRequester(lambda: sent.append(1) or True, 0.05)
    requester.request()
    requester.request()
    assert sent == [1]
    for _ in range(200):  # the coalesced request, 50 ms on
        if len(sent) == 2:
            break
        await asyncio.sleep(0.01)
    assert sent == [1, 1]
    requester.close()


def test_history_returns_only_the_exact_packet() -> None:
    history = PacketHistory(size=4)
    for seq in range(10):
        history.put(ssrc=1, sequence_number=seq, data=bytes([seq]))
    assert history.get(1, 9) == b"\x09"
    assert history.get(1, 5) is None  # overwritten by 9
    assert history.get(2, 9) is None  # another source
