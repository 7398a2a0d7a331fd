"""Coalesced timers: periodic work of many peers shares one wake-up.

Each participant has periodic chores: RTCP reports every second or so, an
ICE consent check every few seconds, the room's active-speaker interval. With
a timer each, a server with N participants wakes up several times N per
second, and every wake-up out of an idle wait costs far more than the chore
itself (a context switch, and on virtual machines an exit to the
hypervisor). Sleeping until the next point of a shared grid instead (the
kernel's timer slack, applied in the event loop) lets asyncio run every chore
due at that point in one loop iteration: the server wakes at most
``1 / SLOT`` times per second for all of them, however many peers it has.
"""

from __future__ import annotations

import asyncio
import math

#: Seconds between the grid points periodic work wakes up on.
SLOT = 0.2


def next_slot(now: float, delay: float, slot: float = SLOT) -> float:
    """The first grid point at least ``delay`` seconds after ``now``.

    Computed from an integer index, so that every caller aiming at the same
    point gets the same float (asyncio then runs them in one iteration).
    """
    index = math.ceil((now + delay) / slot - 1e-9)
    return index * slot


async def sleep_slotted(delay: float, slot: float = SLOT) -> None:
    """Sleep at least ``delay`` seconds, waking on the shared grid of ``slot``."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    handle = loop.call_at(next_slot(loop.time(), delay, slot), _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
