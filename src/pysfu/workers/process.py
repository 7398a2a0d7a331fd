"""The pool's handle on one worker process: its process, socket and requests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any, Protocol

from typing_extensions import assert_never

from ..config import SFUConfig
from ..errors import ProtocolError, WorkerFailed
from ..events import RoomClosedEvent, RoomEvent
from ..messages import RoomClosed
from .channel import FrameChannel
from .codec import (
    dump_object,
    error_from_json,
    event_from_json,
    frame_to_json,
    notice_from_json,
    server_message_from_json,
)
from .framing import FrameError
from .hook import RoomHook
from .protocol import (
    Closed,
    EventNotice,
    Init,
    Out,
    Reply,
    Request,
    Shutdown,
    Usage,
)
from .remote import RemoteParticipant

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "WORKER_FAILED",
    "WorkerOwner",
    "WorkerProcess",
]

logger = logging.getLogger(__name__)

#: Seconds a worker gets to start, and to close its rooms on shutdown.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: The reason of the :class:`~pysfu.events.RoomClosedEvent` of every room of
#: a worker process that died.
WORKER_FAILED = "worker failed"


class WorkerOwner(Protocol):
    """What a :class:`WorkerProcess` tells its owner, a
    :class:`~pysfu.workers.WorkerPool`."""

    @property
    def command(self) -> tuple[str, ...]:
        """How a worker is started (``-m pysfu.workers`` follows)."""
        ...

    @property
    def config(self) -> SFUConfig: ...

    @property
    def room_hook(self) -> RoomHook | None: ...

    def room_closing(self, room_id: str) -> None:
        """A room of this worker began closing (a member was told)."""
        ...

    def room_gone(self, room_id: str) -> None:
        """A room of this worker closed, or was lost with the worker."""
        ...

    def emit(self, event: RoomEvent) -> None:
        """A room event of this worker, for the pool's listeners."""
        ...

    def worker_died(self, worker: WorkerProcess) -> None:
        """The worker's process died (not stopped by the pool)."""
        ...


class WorkerProcess:
    """The pool's handle on one worker: its process, socket and requests."""

    def __init__(self, index: int, pool: WorkerOwner) -> None:
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
        #: CPU seconds the process had spent at its last :class:`Usage` notice.
        self.cpu_seconds = 0.0

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
        room_hook = self._pool.room_hook
        hook = dump_object(room_hook) if room_hook is not None else None
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(
            self.request(Init(dump_object(self._pool.config), hook)),
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
            message = server_message_from_json(notice.message)
            if isinstance(message, RoomClosed):
                # the worker's room is closing (its RoomClosedEvent follows
                # once every member is told): no seat in it from now on
                self._pool.room_closing(notice.room)
            target = self.participants.get((notice.room, notice.participant))
            if target is not None and not target.closed:
                await target.deliver(message)
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
                target.mark_closed()
        elif isinstance(notice, EventNotice):
            event = event_from_json(notice.event)
            if isinstance(event, RoomClosedEvent):
                self._pool.room_gone(event.room_id)
            self._pool.emit(event)
        elif isinstance(notice, Usage):
            self.cpu_seconds = notice.cpu_seconds
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
        reason = WORKER_FAILED if crashed else "server shutting down"
        # after a clean shutdown the worker told everyone already; these are
        # the ones it could not tell
        for participant in list(self.participants.values()):
            await participant.deliver(RoomClosed(reason))
            participant.mark_closed()
        self.participants.clear()
        for room_id in list(self.rooms):
            self._pool.room_gone(room_id)
            self._pool.emit(RoomClosedEvent(room_id, reason))
        if self._channel is not None:
            await self._channel.close()
        if crashed:
            await self.reap()
            self._pool.worker_died(self)

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
