"""The seam between the core and a signalling transport.

The core does no signalling I/O. An adapter (WebSocket, HTTP, in-memory, ...)
does three things:

1. admits a client with :meth:`pysfu.Room.join`, passing an :data:`Outbox`:
   the coroutine function the core calls with every message for that client;
2. turns what the client sends into :data:`~pysfu.signalling.ClientMessage`
   values (:func:`~pysfu.signalling.parse_client_message` does it for JSON)
   and awaits :meth:`pysfu.Participant.handle` with each, in order;
3. when the transport goes away, awaits :meth:`pysfu.Participant.leave`.

:func:`deliver_json` covers step 2 for text transports.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Protocol

from .messages import (
    MAX_SDP_LENGTH,
    ClientMessage,
    ServerMessage,
    SignallingError,
    parse_client_message,
)

#: Called by the core with each message for one client. It should not block
#: for long (queue the message if the transport is slow); if it raises, the
#: message is dropped and the participant carries on.
Outbox = Callable[[ServerMessage], Awaitable[None]]


class SignallingTarget(Protocol):
    """What :func:`deliver_json` needs: a :class:`pysfu.Participant`, or a
    :class:`pysfu.workers.RemoteParticipant` whose connection is in a worker."""

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


#: Largest JSON text accepted from a client.
MAX_MESSAGE_LENGTH = MAX_SDP_LENGTH + 4096


async def deliver_json(participant: SignallingTarget, text: str | bytes) -> None:
    """Parse one JSON text from a client and hand it to ``participant``.

    Malformed input is answered with an ``error`` message to that client only;
    malformed or not, every text counts against the client's rate limit.
    """
    if not await participant.within_rate_limit():
        return
    try:
        if len(text) > MAX_MESSAGE_LENGTH:
            raise SignallingError("too_large", "the message is too large")
        try:
            value = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SignallingError(
                "bad_json", f"the message is not JSON: {exc}"
            ) from exc
        message = parse_client_message(value)
    except SignallingError as exc:
        await participant.refuse(exc)
        return
    await participant.handle_unlimited(message)
