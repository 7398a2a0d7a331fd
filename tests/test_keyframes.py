"""Keyframe request throttling and the NACK packet history."""

from __future__ import annotations

import asyncio

from pysfu.forwarding.history import PacketHistory
from pysfu.forwarding.keyframes import KeyframeRequester


async def test_a_burst_of_requests_sends_one_now_and_one_at_the_interval_end() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    requester = KeyframeRequester(lambda: sent.append(loop.time()) or True, 0.2)
    for _ in range(50):
        requester.request()
    assert len(sent) == 1
    await asyncio.sleep(0.35)
    assert len(sent) == 2  # the coalesced one: the last asker is not forgotten
    assert sent[1] - sent[0] >= 0.2 - 0.01
    await asyncio.sleep(0.3)
    assert len(sent) == 2  # nothing more was asked
    assert (requester.requested, requester.sent) == (50, 2)
    requester.close()


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
