"""Rooms spread over worker processes, one per core, as mediasoup does.

One Python process forwards on one core. A :class:`WorkerPool` starts
``workers`` processes, each with its own asyncio loop and :class:`pysfu.SFU`,
and places every room in exactly one of them. A participant's peer connection
(its UDP sockets) lives in its room's worker, so media never crosses
processes; the pool's process keeps the signalling and talks to the workers
over a socketpair each (length-prefixed JSON frames, see
:mod:`pysfu.workers.framing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from ..config import SFUConfig
from ..errors import (
    DuplicateParticipant,
    RoomExists,
    RoomNotFound,
    TooManyRooms,
    WorkerFailed,
)
from ..events import RoomEvent
from ..peer.answering import ClientOffer
from ..ports import Outbox, Role, RoleName
from ..room import EligibilityPolicy, everyone_else
from ..rooms import JoinRequest, RoomOptions, RoomSeats, join_request
from ..stats import SFUStats, Totals
from .codec import add_totals, dump_object, stats_from_json
from .hook import RoomHook
from .process import START_TIMEOUT, STOP_TIMEOUT, WORKER_FAILED, WorkerProcess
from .protocol import CloseRoom, CreateRoom, Join, LeaveUnlessConnected, Stats
from .remote import RemoteParticipant

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "WORKER_FAILED",
    "PoolListener",
    "RemoteParticipant",
    "RoomHook",
    "WorkerPool",
    "WorkerProcess",
]

logger = logging.getLogger(__name__)

PoolListener = Callable[[RoomEvent], None]


class WorkerPool:
    """Worker processes that each hold some of the rooms.

    ``workers`` defaults to the number of CPUs. Every worker runs a
    :class:`pysfu.SFU` with ``config`` (which must be picklable, as the
    default config is). With ``restart=True`` a worker that dies is replaced
    by a fresh one; its rooms are gone either way, and their participants get
    ``room-closed`` with the reason ``worker failed``. A ``room_hook``
    (picklable, see :class:`~pysfu.workers.hook.RoomHook`) is attached to
    every room in the workers: what in-process code would do to each new
    :class:`pysfu.Room`, such as setting its recording control.

    Use it as an async context manager, or call :meth:`start` and
    :meth:`close`.
    """

    def __init__(
        self,
        workers: int | None = None,
        config: SFUConfig | None = None,
        *,
        restart: bool = False,
        python: str = sys.executable,
        room_hook: RoomHook | None = None,
    ) -> None:
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.config = config or SFUConfig()
        self.restart = restart
        #: Attached to every room of every worker (pickled to each).
        self.room_hook = room_hook
        #: How a worker is started (the interpreter; ``-m pysfu.workers`` follows).
        self.command: tuple[str, ...] = (python,)
        self.workers = [WorkerProcess(i, self) for i in range(count)]
        self._rooms: dict[str, WorkerProcess] = {}
        #: max_participants of every room, for :meth:`seats`
        self._room_sizes: dict[str, int] = {}
        self._room_codecs: dict[str, tuple[str, ...] | None] = {}
        #: rooms whose closing began (close_room, or their worker told a
        #: member so) and whose RoomClosedEvent has not come yet: no seats
        self._closing: set[str] = set()
        self._listeners: list[PoolListener] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self._closed = False
        #: CPU seconds of the workers that died and were replaced
        self._retired_cpu = 0.0

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every worker; returns once all are ready."""
        try:
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every room and stop every worker process (reaped). Idempotent."""
        self._closed = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers))

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.pid for w in self.workers if w.alive and w.pid is not None]

    # ------------------------------------------------------------------
    # rooms

    @property
    def rooms(self) -> dict[str, int]:
        """Every room's id, mapped to the index of the worker holding it."""
        return {room_id: w.index for room_id, w in self._rooms.items()}

    def room_worker(self, room_id: str) -> int:
        """Index of the worker holding a room; raises :class:`RoomNotFound`."""
        return self._worker_of(room_id).index

    @property
    def supports_client_offers(self) -> bool:
        """Never: a WHIP/WHEP client's own offer needs an in-process SFU."""
        return False

    async def create_room(
        self,
        room_id: RoomOptions | str | None = None,
        /,
        *,
        max_participants: int = 1,
        eligibility: EligibilityPolicy = everyone_else,
        close_when_host_leaves: bool = True,
        video_codecs: tuple[str, ...] | None = None,
        worker: int | None = None,
    ) -> str:
        """Create a room in the least loaded worker (or in ``worker``); its id.

        Takes :class:`~pysfu.rooms.RoomOptions` (as every
        :class:`~pysfu.rooms.Rooms` does), or its fields as arguments. Least
        loaded: fewest rooms, then fewest participants. ``eligibility`` must
        be picklable (a module-level function); a ``data_filter`` is not
        supported in workers (``ValueError``). Raises what
        :meth:`pysfu.SFU.create_room` raises, or :class:`WorkerFailed`.
        """
        if isinstance(room_id, RoomOptions):
            options = room_id
            if options.data_filter is not None:
                raise ValueError("a data_filter needs an in-process SFU")
            room_id = options.room_id
            max_participants = options.max_participants
            eligibility = options.eligibility or everyone_else
            close_when_host_leaves = options.close_when_host_leaves
            video_codecs = options.video_codecs
        if room_id is None:
            room_id = secrets.token_urlsafe(12)
        if room_id in self._rooms:
            raise RoomExists(f"room {room_id} exists")
        if len(self._rooms) >= self.config.limits.max_rooms:
            raise TooManyRooms(f"this pool holds {len(self._rooms)} rooms already")
        target = self.workers[worker] if worker is not None else self._least_loaded()
        request = CreateRoom(
            room_id,
            max_participants=max_participants,
            close_when_host_leaves=close_when_host_leaves,
            video_codecs=list(video_codecs) if video_codecs is not None else None,
            eligibility=(
                dump_object(eligibility) if eligibility is not everyone_else else None
            ),
        )
        # placed before the request: a second create of the same id must fail
        self._rooms[room_id] = target
        self._room_sizes[room_id] = max_participants
        self._room_codecs[room_id] = video_codecs
        target.rooms.add(room_id)
        try:
            await target.request(request)
        except BaseException:
            self.room_gone(room_id)
            raise
        return room_id

    def _least_loaded(self) -> WorkerProcess:
        running = [w for w in self.workers if w.alive]
        if not running:
            raise WorkerFailed("no worker is running")
        return min(running, key=lambda w: (len(w.rooms), len(w.participants)))

    def _worker_of(self, room_id: str) -> WorkerProcess:
        worker = self._rooms.get(room_id)
        if worker is None:
            raise RoomNotFound(f"no room {room_id}")
        return worker

    def _open_worker_of(self, room_id: str) -> WorkerProcess:
        """The worker of a room that is not closing: a closing room admits
        nobody (the same error as :meth:`pysfu.SFU.seats` and
        :meth:`pysfu.SFU.join` give in that window)."""
        worker = self._worker_of(room_id)
        if room_id in self._closing:
            raise RoomNotFound(f"no room {room_id} (it is closing)")
        return worker

    async def close_room(self, room_id: str, reason: str = "closed") -> None:
        """Close a room for everyone in it."""
        worker = self._worker_of(room_id)
        self._closing.add(room_id)
        await worker.request(CloseRoom(room_id, reason))

    def room_closing(self, room_id: str) -> None:
        """A room's closing began in its worker (a member was told): it
        grants no seat from now on (for its worker process)."""
        if room_id in self._rooms:
            self._closing.add(room_id)

    def room_gone(self, room_id: str) -> None:
        """Forget a room that closed or was lost (for its worker process)."""
        worker = self._rooms.pop(room_id, None)
        self._room_sizes.pop(room_id, None)
        self._room_codecs.pop(room_id, None)
        self._closing.discard(room_id)
        if worker is not None:
            worker.rooms.discard(room_id)

    def load(self) -> tuple[int, int]:
        """Rooms and participants of every worker, from the pool's own record
        (no request): what a cluster node publishes with its heartbeat."""
        participants = sum(
            1 for w in self.workers for p in w.participants.values() if not p.closed
        )
        return len(self._rooms), participants

    def cpu_seconds(self) -> float:
        """CPU seconds every worker process of this pool has spent, as their
        last :class:`~pysfu.workers.protocol.Usage` notices said (a second
        old at most); those of replaced workers included, so it never drops."""
        return self._retired_cpu + sum(w.cpu_seconds for w in self.workers)

    # ------------------------------------------------------------------
    # participants

    async def join(
        self,
        request: JoinRequest | str,
        participant_id: str | None = None,
        role: Role | RoleName | None = None,
        outbox: Outbox | None = None,
        /,
        *,
        name: str | None = None,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        offer: ClientOffer | None = None,
    ) -> RemoteParticipant:
        """Join a room in its worker, as :meth:`pysfu.Room.join` does in-process.

        Takes a :class:`~pysfu.rooms.JoinRequest`, or its fields (``room_id,
        participant_id, role, outbox``, then ``name`` and the ICE credentials
        as keywords). The outbox is called in this process with every message
        for the client, starting with ``joined`` and the server's first
        offer. Raises what ``Room.join`` raises (the same classes),
        :class:`RoomNotFound`, or :class:`WorkerFailed`. A client's own
        ``offer`` (WHIP/WHEP) is not supported in workers
        (``NotImplementedError``; see :attr:`supports_client_offers`).
        """
        joining = join_request(
            request,
            participant_id,
            role,
            outbox,
            name=name,
            ice_username_fragment=ice_username_fragment,
            ice_password=ice_password,
            offer=offer,
        )
        if joining.offer is not None:
            raise NotImplementedError("WHIP/WHEP offers need an in-process SFU")
        room_id, participant_id = joining.room_id, joining.participant_id
        role = Role(joining.role)
        outbox = joining.outbox
        worker = self._open_worker_of(room_id)
        key = (room_id, participant_id)
        if key in worker.participants:
            # the worker would refuse it too, but this entry must stay intact
            raise DuplicateParticipant(f"{participant_id} is already in room {room_id}")
        participant = RemoteParticipant(
            worker, room_id, participant_id, role, outbox, self.config
        )
        # registered first: the worker sends "joined" before it replies
        worker.participants[key] = participant
        try:
            participant.name = await worker.request(
                Join(
                    room_id,
                    participant_id,
                    role.value,
                    name=joining.name,
                    ice_username_fragment=joining.ice_username_fragment,
                    ice_password=joining.ice_password,
                )
            )
        except BaseException:
            if worker.participants.get(key) is participant:
                del worker.participants[key]
            participant.mark_closed()
            raise
        return participant

    def seats(self, room_id: str) -> RoomSeats:
        """Who holds a room's seats, from the pool's own record (no request).

        Raises :class:`RoomNotFound`, also for a room that is closing (from
        :meth:`close_room`, or from its worker's first ``room-closed`` to a
        member, until its :class:`~pysfu.events.RoomClosedEvent`), as
        :meth:`pysfu.SFU.seats` does. With :meth:`join` and
        :meth:`leave_unless_connected` this makes the pool a
        :class:`~pysfu.rooms.Rooms` for :class:`~pysfu.admission.Admission`.
        """
        worker = self._open_worker_of(room_id)
        roles = [
            p.role
            for (room, _), p in worker.participants.items()
            if room == room_id and not p.closed
        ]
        return RoomSeats(
            room_id=room_id,
            max_participants=self._room_sizes[room_id],
            has_host=Role.HOST in roles,
            participants=roles.count(Role.PARTICIPANT),
            video_codecs=self._room_codecs[room_id],
        )

    async def leave_unless_connected(
        self, room_id: str, participant_id: str, reason: str
    ) -> bool:
        """Remove a member whose connection is not established; whether it did.

        As :meth:`pysfu.Participant.leave_unless_connected`, in its worker.
        """
        worker = self._rooms.get(room_id)
        if worker is None or (room_id, participant_id) not in worker.participants:
            return False
        with contextlib.suppress(WorkerFailed):
            left = await worker.request(
                LeaveUnlessConnected(room_id, participant_id, reason)
            )
            return bool(left)
        return False

    # ------------------------------------------------------------------
    # events and stats

    def add_listener(self, listener: PoolListener) -> Callable[[], None]:
        """Call ``listener`` with every room event of every worker.

        Returns a function that unsubscribes it.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: RoomEvent) -> None:
        """Call every listener with a worker's room event (for the worker
        processes)."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("pool listener failed on %s", event)

    async def _collect(self) -> list[dict[str, Any]]:
        running = [w for w in self.workers if w.alive]
        replies = await asyncio.gather(
            *(w.request(Stats()) for w in running), return_exceptions=True
        )
        return [r for r in replies if isinstance(r, dict)]

    async def stats(self) -> SFUStats:
        """A snapshot of every room of every running worker."""
        rooms = [room for reply in await self._collect() for room in reply["rooms"]]
        return SFUStats(rooms=stats_from_json(rooms))

    async def totals(self) -> Totals:
        """Cumulative counters of the running workers, added up."""
        total = Totals()
        for reply in await self._collect():
            add_totals(total, reply["totals"])
        return total

    # ------------------------------------------------------------------

    def worker_died(self, worker: WorkerProcess) -> None:
        """Replace a worker that died, with ``restart=True`` (for the worker)."""
        if self.restart and not self._closed:
            self._retired_cpu += worker.cpu_seconds
            replacement = WorkerProcess(worker.index, self)
            self.workers[worker.index] = replacement
            task = asyncio.get_running_loop().create_task(self._restart(replacement))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: WorkerProcess) -> None:
        try:
            await worker.start()
            logger.warning("worker %d restarted (pid %s)", worker.index, worker.pid)
        except Exception:
            logger.exception("worker %d could not be restarted", worker.index)
            await worker.stop()
