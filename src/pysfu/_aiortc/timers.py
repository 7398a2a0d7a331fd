"""The edge's scheduler for the forwarding core's timers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def monotonic_call_at(when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
    """Run ``callback`` on the running event loop when ``time.monotonic()``
    reads ``when`` (the forwarding core's deadlines are on that clock).

    Scheduled relative to now rather than with ``loop.call_at``: the loop's
    own clock may be another (uvloop's counts from its own start).
    """
    return asyncio.get_running_loop().call_later(
        max(when - time.monotonic(), 0.0), callback
    )
