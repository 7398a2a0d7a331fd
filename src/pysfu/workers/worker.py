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
import socket
from typing import Any

from ..errors import ProtocolError, PysfuError, SignallingError
from ..events import RoomEvent
from ..messages import ServerMessage, parse_client_message
from ..participant import Participant
from ..room import SFU
from .channel import FrameChannel
from .codec import (
    error_to_json,
    event_to_json,
    load_object,
    server_message_to_json,
    stats_to_json,
    totals_to_json,
)

__all__ = [
    "WorkerServer",
    "main",
    "run",
]

logger = logging.getLogger(__name__)


class WorkerServer:
    """Serves the pool's requests for one SFU."""

    def __init__(self, channel: FrameChannel, sfu: SFU) -> None:
        self.channel = channel
        self.sfu = sfu
        self.participants: dict[tuple[str, str], Participant] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Process frames in arrival order until the pool goes away."""
        while (frame := await self.channel.receive()) is not None:
            if frame.get("type") == "shutdown":
                await self.sfu.close()
                for key, participant in list(self.participants.items()):
                    self._report_closed(key, participant)
                self._reply(frame, None)
                return
            try:
                result = await self._dispatch(frame)
            except Exception as exc:  # answered, or logged: the worker goes on
                if "id" in frame:
                    self.channel.send(
                        {
                            "type": "reply",
                            "id": frame["id"],
                            "error": error_to_json(exc),
                        }
                    )
                elif not isinstance(exc, PysfuError):
                    logger.exception("frame %s failed", frame.get("type"))
            else:
                self._reply(frame, result)

    def _reply(self, frame: dict[str, Any], result: Any) -> None:
        if "id" in frame:
            self.channel.send({"type": "reply", "id": frame["id"], "result": result})

    async def _dispatch(self, frame: dict[str, Any]) -> Any:
        kind = frame.get("type")
        if kind == "create_room":
            return self._create_room(frame)
        if kind == "join":
            return await self._join(frame)
        if kind == "stats":
            return {
                "rooms": stats_to_json(self.sfu.stats()),
                "totals": totals_to_json(self.sfu.totals()),
            }
        if kind == "close_room":
            await self.sfu.close_room(frame["room"], frame.get("reason", "closed"))
            return None
        key = (str(frame.get("room")), str(frame.get("participant")))
        participant = self.participants.get(key)
        if participant is None:
            return None  # it left meanwhile: as on a closed socket
        if kind == "handle":
            try:
                message = parse_client_message(frame.get("message"))
            except SignallingError as exc:
                await participant.refuse(exc)
            else:
                await participant.handle_unlimited(message)
        elif kind == "refuse":
            error = SignallingError(str(frame.get("code")), str(frame.get("message")))
            await participant.refuse(error)
        elif kind == "leave":
            await participant.leave(frame.get("reason", "left"))
            self._report_closed(key, participant)  # before the reply, as in-process
        elif kind == "leave_unless_connected":
            left = await participant.leave_unless_connected(frame.get("reason", "left"))
            self._report_closed(key, participant)
            return left
        elif kind == "pending_offer":
            return participant.pending_offer()
        else:
            raise ProtocolError(f"unknown request {kind!r}")
        return None

    def _create_room(self, frame: dict[str, Any]) -> str:
        options: dict[str, Any] = {}
        if frame.get("eligibility"):
            options["eligibility"] = load_object(frame["eligibility"])
        codecs = frame.get("video_codecs")
        room = self.sfu.create_room(
            frame["room"],
            max_participants=frame.get("max_participants", 1),
            close_when_host_leaves=frame.get("close_when_host_leaves", True),
            video_codecs=tuple(codecs) if codecs is not None else None,
            **options,
        )
        room.add_listener(self._on_event)
        return room.id

    def _on_event(self, event: RoomEvent) -> None:
        self.channel.send({"type": "event", **event_to_json(event)})

    async def _join(self, frame: dict[str, Any]) -> str:
        room_id, participant_id = frame["room"], frame["participant"]

        async def outbox(message: ServerMessage) -> None:
            self.channel.send(
                {
                    "type": "out",
                    "room": room_id,
                    "participant": participant_id,
                    "message": server_message_to_json(message),
                }
            )

        room = self.sfu.get_room(room_id)
        participant = await room.join(
            participant_id,
            frame["role"],
            outbox,
            name=frame.get("name"),
            ice_username_fragment=frame.get("ice_username_fragment"),
            ice_password=frame.get("ice_password"),
        )
        key = (room_id, participant_id)
        self.participants[key] = participant
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
            self.channel.send({"type": "closed", "room": key[0], "participant": key[1]})

    async def close(self) -> None:
        await self.sfu.close()
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self.channel.close()


async def run(fd: int) -> None:
    """Serve the pool on socket ``fd`` until it closes."""
    channel = await FrameChannel.open(socket.socket(fileno=fd))
    init = await channel.receive()
    if init is None or init.get("type") != "init":
        await channel.close()
        return
    server = WorkerServer(channel, SFU(load_object(init["config"])))
    channel.send({"type": "reply", "id": init["id"], "result": None})
    try:
        await server.serve()
    finally:
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
