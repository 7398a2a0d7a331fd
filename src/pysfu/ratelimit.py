"""Token buckets: how fast one client may send signalling, or call an HTTP
endpoint (per client address).

They only count: the caller decides what a refusal looks like (an ``error``
message for signalling, a dropped data channel message, a 429).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["ClientLimits", "TokenBucket"]


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

    def give_back(self) -> None:
        """Return a token taken by :meth:`allow`."""
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def should_warn(self) -> bool:
        """True at most once per second: whether to tell the client it is limited."""
        now = self._clock()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            return True
        return False


class ClientLimits:
    """A :class:`TokenBucket` per client address, for HTTP endpoints.

    Memory is bounded: past ``max_clients`` addresses, the least recently
    seen is forgotten (it starts again with a full bucket, which is the
    lenient side to err on).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, client: str) -> TokenBucket:
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
        self._buckets[client] = bucket
        return bucket

    def allow(self, client: str | None) -> bool:
        """Take one of ``client``'s tokens if it has one left."""
        return self._bucket(client or "").allow()

    def exhausted(self, client: str | None) -> bool:
        """Whether ``client`` has no token left (takes none): check it before
        costly work, and spend a token with :meth:`allow` on a failure."""
        bucket = self._bucket(client or "")
        if bucket.allow():
            bucket.give_back()
            return False
        return True
