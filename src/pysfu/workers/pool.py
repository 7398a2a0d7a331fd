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
import itertools
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from typing import Any

from typing_extensions import assert_never

from ..config import SFUConfig
from ..errors import (
    DuplicateParticipant,
    ProtocolError,
    RoomExists,
    RoomNotFound,
    SignallingError,
    TooManyRooms,
    WorkerFailed,
)
from ..events import RoomClosedEvent, RoomEvent
from ..messages import ClientMessage, RoomClosed, ServerMessage, to_json
from ..participant import Role
from ..ports import Outbox
from ..ratelimit import TokenBucket
from ..room import EligibilityPolicy, everyone_else
from ..rooms import JoinRequest, RoomOptions, RoomSeats, join_request
from ..stats import SFUStats, Totals
from .channel import FrameChannel
from .codec import (
    add_totals,
    dump_object,
    error_from_json,
    event_from_json,
    frame_to_json,
    notice_from_json,
    server_message_from_json,
    stats_from_json,
)
from .framing import FrameError
from .protocol import (
    Closed,
    CloseRoom,
    CreateRoom,
    EventNotice,
    Handle,
    Init,
    Join,
    Leave,
    LeaveUnlessConnected,
    Out,
    PendingOffer,
    Refuse,
    Reply,
    Request,
    Shutdown,
    Stats,
)

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "PoolListener",
    "RemoteParticipant",
    "WorkerPool",
    "WorkerProcess",
]

logger = logging.getLogger(__name__)

PoolListener = Callable[[RoomEvent], None]

#: Seconds a worker gets to start, and to close its rooms on shutdown.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class RemoteParticipant:
    """A participant whose connection lives in a worker process.

    It has the signalling surface of :class:`pysfu.Participant`:
    :meth:`handle` (or :func:`pysfu.signalling.deliver_json`) for what the
    client sends, :meth:`leave` when its transport goes away, and messages
    for the client arrive at the ``outbox`` given to :meth:`WorkerPool.join`,
    in the pool's process. The rate limit is applied here, before anything
    crosses to the worker; refusals are counted in the worker's stats.
    """

    def __init__(
        self,
        worker: WorkerProcess,
        room_id: str,
        participant_id: str,
        role: Role,
        outbox: Outbox,
        config: SFUConfig,
    ) -> None:
        self.id = participant_id
        self.room_id = room_id
        self.role = role
        #: Display name, known once the join completed.
        self.name = participant_id
        self.closed = False
        self._worker = worker
        self._outbox = outbox
        self._rate = TokenBucket(
            config.limits.messages_per_second, config.limits.message_burst
        )
        self._closed_event = asyncio.Event()

    @property
    def worker(self) -> int:
        """Index of the worker process holding this participant."""
        return self._worker.index

    async def handle(self, message: ClientMessage) -> None:
        """Pass one client message to the worker (rate limited as in-process)."""
        if await self.within_rate_limit():
            await self.handle_unlimited(message)

    async def within_rate_limit(self) -> bool:
        """Count one client message against the rate limit; False: drop it."""
        if self._rate.allow():
            return True
        if self._rate.should_warn():  # told at most once per second
            await self.refuse(SignallingError("rate_limited", "too many messages"))
        return False

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

    async def _deliver(self, message: ServerMessage) -> None:
        try:
            await self._outbox(message)
        except Exception:
            logger.debug("outbox of %s failed", self.id, exc_info=True)

    def _mark_closed(self) -> None:
        self.closed = True
        self._closed_event.set()

    def __repr__(self) -> str:
        return (
            f"<RemoteParticipant {self.id} ({self.role.value}) in {self.room_id}"
            f" on worker {self.worker}>"
        )


class WorkerProcess:
    """The pool's handle on one worker: its process, socket and requests."""

    def __init__(self, index: int, pool: WorkerPool) -> None:
        self.index = index
        self.rooms: set[str] = set()
        self.participants: dict[tuple[str, str], RemoteParticipant] = {}
        self.process: asyncio.subprocess.Process | None = None
        self._pool = pool
        self._channel: FrameChannel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self.alive = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self._pool.command,
                "-m",
                "pysfu.workers",
                "--fd",
                str(child_end.fileno()),
                "--index",
                str(self.index),
                "--log-level",
                logging.getLevelName(logging.getLogger("pysfu").getEffectiveLevel()),
                pass_fds=(child_end.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # its own session: a Ctrl-C in the terminal reaches the pool
                # only, which then shuts the workers down in order
                start_new_session=True,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self._channel = await FrameChannel.open(parent_end)
        self.alive = True
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(
            self.request(Init(dump_object(self._pool.config))),
            START_TIMEOUT,
        )

    def send(self, request: Request) -> None:
        """Send a request that wants no reply (dropped if the worker is gone)."""
        if self.alive and self._channel is not None:
            self._channel.send(frame_to_json(request))

    async def request(self, request: Request) -> Any:
        """Send a request and wait for its reply; raises what the worker raised."""
        if not self.alive or self._channel is None:
            raise WorkerFailed(f"worker {self.index} is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._channel.send(frame_to_json(request, request_id))
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        assert self._channel is not None
        try:
            while (frame := await self._channel.receive()) is not None:
                try:
                    await self._on_frame(frame)
                except (ProtocolError, KeyError, TypeError):
                    logger.exception("worker %d sent a bad frame", self.index)
        except FrameError:
            logger.exception("worker %d: corrupt stream", self.index)
        finally:
            await self._lost()

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        notice = notice_from_json(frame)
        if isinstance(notice, Out):
            target = self.participants.get((notice.room, notice.participant))
            if target is not None and not target.closed:
                await target._deliver(server_message_from_json(notice.message))
        elif isinstance(notice, Reply):
            future = self._pending.get(notice.id)
            if future is not None and not future.done():
                if notice.error is not None:
                    future.set_exception(error_from_json(notice.error))
                else:
                    future.set_result(notice.result)
        elif isinstance(notice, Closed):
            target = self.participants.pop((notice.room, notice.participant), None)
            if target is not None:
                target._mark_closed()
        elif isinstance(notice, EventNotice):
            event = event_from_json(notice.event)
            if isinstance(event, RoomClosedEvent):
                self._pool._forget_room(event.room_id)
            self._pool._emit(event)
        else:
            assert_never(notice)

    async def _lost(self) -> None:
        """The socket closed: a shutdown we asked for, or the worker died."""
        self.alive = False
        crashed = not self._stopping
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerFailed(f"worker {self.index} exited"))
        if crashed:
            logger.error("worker %d (pid %s) died", self.index, self.pid)
        reason = "worker failed" if crashed else "server shutting down"
        # after a clean shutdown the worker told everyone already; these are
        # the ones it could not tell
        for participant in list(self.participants.values()):
            await participant._deliver(RoomClosed(reason))
            participant._mark_closed()
        self.participants.clear()
        for room_id in list(self.rooms):
            self._pool._forget_room(room_id)
            self._pool._emit(RoomClosedEvent(room_id, reason))
        if self._channel is not None:
            await self._channel.close()
        if crashed:
            await self.reap()
            self._pool._worker_died(self)

    async def stop(self) -> None:
        """Close every room (participants are told), then end the process."""
        self._stopping = True
        if self.alive:
            with contextlib.suppress(WorkerFailed, asyncio.TimeoutError):
                await asyncio.wait_for(self.request(Shutdown()), STOP_TIMEOUT)
        if self._channel is not None:
            await self._channel.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.reap()

    async def reap(self) -> None:
        """Wait for the process to exit (it does once its socket closes)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        for escalate in (process.terminate, process.kill):
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                return
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    escalate()
        await process.wait()


class WorkerPool:
    """Worker processes that each hold some of the rooms.

    ``workers`` defaults to the number of CPUs. Every worker runs a
    :class:`pysfu.SFU` with ``config`` (which must be picklable, as the
    default config is). With ``restart=True`` a worker that dies is replaced
    by a fresh one; its rooms are gone either way, and their participants get
    ``room-closed`` with the reason ``worker failed``.

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
    ) -> None:
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.config = config or SFUConfig()
        self.restart = restart
        #: How a worker is started (the interpreter; ``-m pysfu.workers`` follows).
        self.command: tuple[str, ...] = (python,)
        self.workers = [WorkerProcess(i, self) for i in range(count)]
        self._rooms: dict[str, WorkerProcess] = {}
        #: max_participants of every room, for :meth:`seats`
        self._room_sizes: dict[str, int] = {}
        self._room_codecs: dict[str, tuple[str, ...] | None] = {}
        self._listeners: list[PoolListener] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self._closed = False

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
            self._forget_room(room_id)
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

    async def close_room(self, room_id: str, reason: str = "closed") -> None:
        """Close a room for everyone in it."""
        worker = self._worker_of(room_id)
        await worker.request(CloseRoom(room_id, reason))

    def _forget_room(self, room_id: str) -> None:
        worker = self._rooms.pop(room_id, None)
        self._room_sizes.pop(room_id, None)
        self._room_codecs.pop(room_id, None)
        if worker is not None:
            worker.rooms.discard(room_id)

    # ------------------------------------------------------------------
    # participants

    async def join(
        self,
        request: JoinRequest | str,
        participant_id: str | None = None,
        role: Role | str | None = None,
        outbox: Outbox | None = None,
        /,
        **details: Any,
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
        joining = join_request(request, participant_id, role, outbox, **details)
        if joining.offer is not None:
            raise NotImplementedError("WHIP/WHEP offers need an in-process SFU")
        room_id, participant_id = joining.room_id, joining.participant_id
        role = Role(joining.role)
        outbox = joining.outbox
        worker = self._worker_of(room_id)
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
            participant._mark_closed()
            raise
        return participant

    def seats(self, room_id: str) -> RoomSeats:
        """Who holds a room's seats, from the pool's own record (no request).

        Raises :class:`RoomNotFound`. With :meth:`join` and
        :meth:`leave_unless_connected` this makes the pool a
        :class:`~pysfu.rooms.Rooms` for :class:`~pysfu.admission.Admission`.
        """
        worker = self._worker_of(room_id)
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

    def _emit(self, event: RoomEvent) -> None:
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

    def _worker_died(self, worker: WorkerProcess) -> None:
        if self.restart and not self._closed:
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
