"""The rate limit on what one client sends, before anything handles it.

A :class:`pysfu.Participant` and a :class:`pysfu.workers.RemoteParticipant`
(whose connection is in a worker process) take a client's signalling the
same way: each message counts against the client's token bucket
(``LimitsConfig.messages_per_second``, ``message_burst``); beyond it the
message is dropped and the client told, with the ``error`` ``rate_limited``
at most once per second. :class:`ClientEndpoint` is that gate, once;
the two classes say what handling and refusing mean for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from .config import LimitsConfig
from .errors import SignallingError
from .messages import ClientMessage
from .ratelimit import TokenBucket

__all__ = ["ClientEndpoint"]


class ClientEndpoint(ABC):
    """One client's signalling surface: :meth:`handle`, rate limited."""

    def __init__(
        self, limits: LimitsConfig, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock``: the rate limit's (default ``time.monotonic``)."""
        rate, burst = limits.messages_per_second, limits.message_burst
        self._rate = (
            TokenBucket(rate, burst)
            if clock is None
            else TokenBucket(rate, burst, clock)
        )

    async def handle(self, message: ClientMessage) -> None:
        """Process one message from the client; problems are answered with an error.

        Messages beyond the rate limit (``LimitsConfig.messages_per_second``)
        are dropped.
        """
        if await self.within_rate_limit():
            await self.handle_unlimited(message)

    async def within_rate_limit(self) -> bool:
        """Count one client message against the rate limit; False: drop it."""
        if self._rate.allow():
            return True
        if self._rate.should_warn():  # told at most once per second
            await self.refuse(SignallingError("rate_limited", "too many messages"))
        return False

    @abstractmethod
    async def handle_unlimited(self, message: ClientMessage) -> None:
        """:meth:`handle` for a message already counted by :meth:`within_rate_limit`."""

    @abstractmethod
    async def refuse(self, error: SignallingError) -> None:
        """Answer the client with an error."""
