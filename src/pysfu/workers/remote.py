"""The pool's end of a participant whose connection is in a worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from ..config import SFUConfig
from ..endpoint import ClientEndpoint
from ..errors import SignallingError, WorkerFailed
from ..messages import ClientMessage, ServerMessage, to_json
from ..ports import Outbox, Role
from .protocol import Handle, Leave, PendingOffer, Refuse, Request

__all__ = ["RemoteParticipant", "WorkerLink"]

logger = logging.getLogger(__name__)


class WorkerLink(Protocol):
    """What a :class:`RemoteParticipant` needs of the worker holding it: a
    :class:`~pysfu.workers.process.WorkerProcess`."""

    @property
    def index(self) -> int: ...
    def send(self, request: Request) -> None: ...
    async def request(self, request: Request) -> Any: ...


class RemoteParticipant(ClientEndpoint):
    """A participant whose connection lives in a worker process.

    It has the signalling surface of :class:`pysfu.Participant`:
    :meth:`handle` (or :func:`pysfu.signalling.deliver_json`) for what the
    client sends, :meth:`leave` when its transport goes away, and messages
    for the client arrive at the ``outbox`` given to :meth:`WorkerPool.join`,
    in the pool's process. The rate limit (:class:`~pysfu.endpoint.ClientEndpoint`,
    as in-process) is applied here, before anything crosses to the worker;
    refusals are counted in the worker's stats.
    """

    def __init__(
        self,
        worker: WorkerLink,
        room_id: str,
        participant_id: str,
        role: Role,
        outbox: Outbox,
        config: SFUConfig,
    ) -> None:
        super().__init__(config.limits)
        self.id = participant_id
        self.room_id = room_id
        self.role = role
        #: Display name, known once the join completed.
        self.name = participant_id
        self.closed = False
        self._worker = worker
        self._outbox = outbox
        self._closed_event = asyncio.Event()

    @property
    def worker(self) -> int:
        """Index of the worker process holding this participant."""
        return self._worker.index

    async def handle_unlimited(self, message: ClientMessage) -> None:
        """:meth:`handle` for a message already counted by :meth:`within_rate_limit`."""
        self._send(Handle(self.room_id, self.id, to_json(message)))

    async def refuse(self, error: SignallingError) -> None:
        """Answer the client with an error (through the worker, in order)."""
        self._send(Refuse(self.room_id, self.id, error.code, error.message))

    async def leave(self, reason: str = "left") -> None:
        """Leave the room; returns once the worker removed the participant."""
        if self.closed:
            return
        with contextlib.suppress(WorkerFailed):
            await self._worker.request(Leave(self.room_id, self.id, reason))

    async def wait_closed(self) -> None:
        """Return once the participant is closed (left, failed, room or worker gone)."""
        await self._closed_event.wait()

    async def fetch_pending_offer(self) -> str | None:
        """:meth:`pysfu.Participant.pending_offer`, asked of the worker.

        For adapters whose client reconnects: it may have lost the offer.
        ``None`` once the participant is closed.
        """
        if self.closed:
            return None
        with contextlib.suppress(WorkerFailed):
            offer = await self._worker.request(PendingOffer(self.room_id, self.id))
            return str(offer) if offer is not None else None
        return None

    def _send(self, request: Handle | Refuse) -> None:
        if not self.closed:
            self._worker.send(request)

    async def deliver(self, message: ServerMessage) -> None:
        """Hand a message from the worker to the client's outbox (for the
        :class:`~pysfu.workers.process.WorkerProcess` that reads it)."""
        try:
            await self._outbox(message)
        except Exception:
            logger.debug("outbox of %s failed", self.id, exc_info=True)

    def mark_closed(self) -> None:
        """The worker removed this participant, or is gone (for the pool)."""
        self.closed = True
        self._closed_event.set()

    def __repr__(self) -> str:
        return (
            f"<RemoteParticipant {self.id} ({self.role.value}) in {self.room_id}"
            f" on worker {self.worker}>"
        )
