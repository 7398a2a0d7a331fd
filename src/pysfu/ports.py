"""The types the core is written against and adapters implement.

The core (rooms, participants, the worker pool) does no signalling I/O: it
hands every message for a client to an :data:`Outbox`, and an adapter drives
a :class:`SessionParticipant` with what the client sends. Both are defined
here, below :mod:`pysfu.signalling`, so that the core never imports an
adapter package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from .errors import SignallingError
from .messages import ClientMessage, ServerMessage

__all__ = ["Outbox", "SessionParticipant", "SignallingTarget"]

#: Called by the core with each message for one client. It should not block
#: for long (queue the message if the transport is slow); if it raises, the
#: message is dropped and the participant carries on.
Outbox = Callable[[ServerMessage], Awaitable[None]]


class SignallingTarget(Protocol):
    """What :func:`pysfu.signalling.deliver_json` needs: a
    :class:`pysfu.Participant`, or a :class:`pysfu.workers.RemoteParticipant`
    whose connection is in a worker."""

    async def within_rate_limit(self) -> bool: ...
    async def refuse(self, error: SignallingError) -> None: ...
    async def handle_unlimited(self, message: ClientMessage) -> None: ...


class SessionParticipant(SignallingTarget, Protocol):
    """What an adapter needs for a whole session: a :class:`pysfu.Participant`
    or a :class:`pysfu.workers.RemoteParticipant`."""

    @property
    def id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    async def leave(self, reason: str = "left") -> None: ...
    async def wait_closed(self) -> None: ...
    async def fetch_pending_offer(self) -> str | None: ...
