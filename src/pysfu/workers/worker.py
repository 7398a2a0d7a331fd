"""The worker process: one asyncio loop, one :class:`pysfu.SFU`, its rooms.

Started by :class:`~pysfu.workers.WorkerPool` as ``python -m pysfu.workers
--fd N``, where ``N`` is its end of a socketpair. It serves requests from the
pool until the socket closes, which happens when the pool shuts it down or
the pool's process dies: a worker never outlives its parent.

Media never leaves this process: the peer connections (UDP sockets) of every
participant in its rooms live here. Only signalling, events and stats go
through the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from typing_extensions import assert_never

from ..accounting import CpuAccount, metered
from ..errors import ProtocolError, PysfuError, SignallingError
from ..events import RoomEvent
from ..messages import ServerMessage, parse_client_message
from ..participant import Participant
from ..ports import Role
from ..sfu import SFU
from ..signalling.adapter import enforce_cpu_budget
from .channel import FrameChannel
from .codec import (
    error_to_json,
    event_to_json,
    frame_to_json,
    load_object,
    request_from_json,
    server_message_to_json,
    stats_to_json,
    totals_to_json,
)
from .hook import RoomHook
from .protocol import (
    USAGE_INTERVAL,
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
    Usage,
)

__all__ = [
    "WorkerServer",
    "main",
    "run",
]

logger = logging.getLogger(__name__)


class WorkerServer:
    """Serves the pool's requests for one SFU."""

    def __init__(
        self, channel: FrameChannel, sfu: SFU, room_hook: RoomHook | None = None
    ) -> None:
        self.channel = channel
        self.sfu = sfu
        #: Attached to every room created here; drained on shutdown.
        self.room_hook = room_hook
        self.participants: dict[tuple[str, str], Participant] = {}
        #: each participant's CPU account (its budget is enforced here, where
        #: its connection is: the pool's process has none to measure)
        self._accounts: dict[tuple[str, str], CpuAccount | None] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Process frames in arrival order until the pool goes away."""
        while (frame := await self.channel.receive()) is not None:
            request_id = frame.get("id")
            try:
                request, request_id = request_from_json(frame)
            except ProtocolError as exc:
                self._failed(frame, request_id, exc)
                continue
            if isinstance(request, Shutdown):
                await self.sfu.close()
                await self._drain_hook()  # e.g. recordings finished first
                for key, participant in list(self.participants.items()):
                    self._report_closed(key, participant)
                self._reply(request_id, None)
                return
            try:
                result = await self._dispatch(request)
            except Exception as exc:  # answered, or logged: the worker goes on
                self._failed(frame, request_id, exc)
            else:
                self._reply(request_id, result)

    async def report_usage(self, interval: float = USAGE_INTERVAL) -> None:
        """Send the pool :class:`Usage` now and every ``interval`` s, until
        cancelled (unasked: a cluster heartbeat reads it synchronously)."""
        while True:
            times = os.times()
            self.channel.send(frame_to_json(Usage(times.user + times.system)))
            await asyncio.sleep(interval)

    def _failed(self, frame: dict[str, Any], request_id: Any, exc: Exception) -> None:
        if isinstance(request_id, int):
            self.channel.send(
                frame_to_json(Reply(request_id, error=error_to_json(exc)))
            )
        elif not isinstance(exc, PysfuError):
            logger.exception("frame %s failed", frame.get("type"))

    def _reply(self, request_id: int | None, result: Any) -> None:
        if request_id is not None:
            self.channel.send(frame_to_json(Reply(request_id, result)))

    async def _dispatch(self, request: Request) -> Any:
        if isinstance(request, CreateRoom):
            return self._create_room(request)
        if isinstance(request, Join):
            return await self._join(request)
        if isinstance(request, Stats):
            return {
                "rooms": stats_to_json(self.sfu.stats()),
                "totals": totals_to_json(self.sfu.totals()),
            }
        if isinstance(request, CloseRoom):
            await self.sfu.close_room(request.room, request.reason)
            return None
        if isinstance(request, Init | Shutdown):
            raise ProtocolError(f"unexpected {request.type!r}")
        key = (request.room, request.participant)
        participant = self.participants.get(key)
        if participant is None:
            return None  # it left meanwhile: as on a closed socket
        if isinstance(request, Handle):
            try:
                message = parse_client_message(request.message)
            except SignallingError as exc:
                await participant.refuse(exc)
            else:
                # charged as the in-process adapters charge it (parsing was
                # done, and rate limited, in the pool's process)
                await metered(
                    self._accounts.get(key),
                    "signalling",
                    participant.handle_unlimited(message),
                )
        elif isinstance(request, Refuse):
            await participant.refuse(SignallingError(request.code, request.message))
        elif isinstance(request, Leave):
            await participant.leave(request.reason)
            self._report_closed(key, participant)  # before the reply, as in-process
        elif isinstance(request, LeaveUnlessConnected):
            left = await participant.leave_unless_connected(request.reason)
            self._report_closed(key, participant)
            return left
        elif isinstance(request, PendingOffer):
            return participant.pending_offer()
        else:
            assert_never(request)
        return None

    def _create_room(self, request: CreateRoom) -> str:
        options: dict[str, Any] = {}
        if request.eligibility:
            options["eligibility"] = load_object(request.eligibility)
        codecs = request.video_codecs
        room = self.sfu.create_room(
            request.room,
            max_participants=request.max_participants,
            close_when_host_leaves=request.close_when_host_leaves,
            video_codecs=tuple(codecs) if codecs is not None else None,
            **options,
        )
        room.add_listener(self._on_event)
        if self.room_hook is not None:
            self.room_hook.attach(room)
        return room.id

    def _on_event(self, event: RoomEvent) -> None:
        self.channel.send(frame_to_json(EventNotice(event_to_json(event))))

    async def _join(self, request: Join) -> str:
        room_id, participant_id = request.room, request.participant

        async def outbox(message: ServerMessage) -> None:
            out = Out(room_id, participant_id, server_message_to_json(message))
            self.channel.send(frame_to_json(out))

        room = self.sfu.get_room(room_id)
        participant = await room.join(
            participant_id,
            Role(request.role),
            outbox,
            name=request.name,
            ice_username_fragment=request.ice_username_fragment,
            ice_password=request.ice_password,
        )
        key = (room_id, participant_id)
        self.participants[key] = participant
        self._accounts[key] = enforce_cpu_budget(participant)
        watcher = asyncio.get_running_loop().create_task(self._watch(key, participant))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return participant.name

    async def _watch(self, key: tuple[str, str], participant: Participant) -> None:
        await participant.wait_closed()
        self._report_closed(key, participant)

    def _report_closed(self, key: tuple[str, str], participant: Participant) -> None:
        if participant.closed and self.participants.get(key) is participant:
            del self.participants[key]
            self._accounts.pop(key, None)
            self.channel.send(frame_to_json(Closed(key[0], key[1])))

    async def _drain_hook(self) -> None:
        if self.room_hook is not None:
            try:
                await self.room_hook.drain()
            except Exception:
                logger.exception("the room hook failed to drain")

    async def close(self) -> None:
        """Close every room (the hook drained), then the channel: on
        shutdown, or when the pool's process went away."""
        await self.sfu.close()
        await self._drain_hook()
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self.channel.close()


async def run(fd: int) -> None:
    """Serve the pool on socket ``fd`` until it closes."""
    channel = await FrameChannel.open(socket.socket(fileno=fd))
    frame = await channel.receive()
    init, init_id = request_from_json(frame) if frame is not None else (None, None)
    if not isinstance(init, Init) or init_id is None:
        await channel.close()
        return
    hook = load_object(init.room_hook) if init.room_hook is not None else None
    server = WorkerServer(channel, SFU(load_object(init.config)), hook)
    channel.send(frame_to_json(Reply(init_id)))
    reporter = asyncio.get_running_loop().create_task(server.report_usage())
    try:
        await server.serve()
    finally:
        reporter.cancel()
        await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pysfu.workers")
    parser.add_argument("--fd", type=int, required=True, help="socket to the pool")
    parser.add_argument("--index", type=int, default=0, help="for log lines")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"worker {args.index}: %(name)s: %(levelname)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.fd))
