"""A token bucket, for limiting how fast one client may send signalling.

It only counts: the caller decides what a refusal looks like (an ``error``
message for signalling, a dropped data channel message).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of ``burst``."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._last_warning = -1.0

    def allow(self) -> bool:
        """Take a token if one is left."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def should_warn(self) -> bool:
        """True at most once per second: whether to tell the client it is limited."""
        now = self._clock()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            return True
        return False
