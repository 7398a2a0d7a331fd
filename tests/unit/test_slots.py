"""Coalesced timers: periodic chores of many peers share wake-ups."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st

from pysfu._slots import SLOT, next_slot, sleep_slotted


@given(
    now=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    delay=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_the_next_slot_is_the_first_grid_point_after_the_delay(
    now: float, delay: float
) -> None:
    point = next_slot(now, delay)
    assert point >= now + delay - 1e-6
    assert point < now + delay + SLOT + 1e-6
    # every caller whose target falls in this slot gets the very same float
    assert next_slot(point - SLOT / 2, 0) == point
    assert next_slot(point - SLOT / 4, 0) == point


async def test_fifty_randomized_timers_wake_the_loop_a_handful_of_times() -> None:
    loop = asyncio.get_running_loop()
    woken_at: list[float] = []

    async def chore() -> None:
        # RTCP's randomized interval (RFC 3550): 0.5 to 1.5 of one second
        await sleep_slotted(0.5 + random.random())
        woken_at.append(loop.time())

    scheduled_before = len(loop._scheduled)  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(chore()) for _ in range(50)]
    await asyncio.sleep(0)
    handles = loop._scheduled[scheduled_before:]  # type: ignore[attr-defined]
    # fifty timers, but at most six distinct moments to wake up at
    assert len({h.when() for h in handles}) <= round(1.0 / SLOT) + 1
    await asyncio.gather(*tasks)
    assert len(woken_at) == 50


async def test_a_cancelled_sleep_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(sleep_slotted(30))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
