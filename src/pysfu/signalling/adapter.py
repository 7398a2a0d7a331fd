"""The seam between the core and a signalling transport.

The core does no signalling I/O. An adapter (WebSocket, HTTP, in-memory, ...)
does three things:

1. admits a client with :meth:`pysfu.Room.join`, passing an :data:`Outbox`:
   the coroutine function the core calls with every message for that client;
2. turns what the client sends into :data:`~pysfu.signalling.ClientMessage`
   values (:func:`~pysfu.signalling.parse_client_message` does it for JSON)
   and awaits :meth:`pysfu.Participant.handle` with each, in order;
3. when the transport goes away, awaits :meth:`pysfu.Participant.leave`.

:func:`deliver_json` covers step 2 for text transports, and
:func:`enforce_cpu_budget` holds an in-process participant to its CPU budget
(:mod:`pysfu.accounting`).
"""

from __future__ import annotations

import asyncio
import json
import weakref

from ..accounting import CpuAccount, account_of
from ..messages import MAX_SDP_LENGTH, SignallingError, parse_client_message
from ..ports import Outbox, SessionParticipant, SignallingTarget

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "Outbox",
    "SessionParticipant",
    "SignallingTarget",
    "deliver_json",
    "enforce_cpu_budget",
]

#: Departures under way for an exceeded CPU budget (kept from the collector).
_leaving: set[asyncio.Task[None]] = set()

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


def enforce_cpu_budget(participant: SessionParticipant) -> CpuAccount | None:
    """Hold ``participant`` to ``LimitsConfig.cpu_budget``: once it has made
    the server spend more than that on its signalling, data, candidates and
    RTCP, it is sent the ``error`` ``cpu_budget`` and leaves with reason
    ``cpu_budget``. Returns its account (charge
    its signalling there, see :func:`pysfu.accounting.metered`), or ``None``
    for a participant whose connection is in a worker process (the worker
    process calls this for its own :class:`pysfu.Participant`).
    """
    pc = getattr(participant, "pc", None)
    config = getattr(participant, "config", None)
    limits = getattr(config, "limits", None)
    if pc is None or limits is None:
        return None
    account = account_of(pc)
    loop = asyncio.get_running_loop()
    # the account lives as long as the connection: it must not keep the
    # participant (and with it the connection) alive
    ref = weakref.ref(participant)

    def exceeded() -> None:
        participant = ref()
        if participant is not None and not participant.closed:
            task = loop.create_task(_remove_for_cpu(participant))
            _leaving.add(task)
            task.add_done_callback(_leaving.discard)

    account.limit(limits.cpu_budget, limits.cpu_budget_window, participant.id, exceeded)
    return account


async def _remove_for_cpu(participant: SessionParticipant) -> None:
    # told why first (the error reaches the client before its socket closes)
    await participant.refuse(
        SignallingError(
            "cpu_budget", "removed: this connection made the server spend too much CPU"
        )
    )
    await participant.leave("cpu_budget")
