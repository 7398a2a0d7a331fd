"""The benchmark's server process, alone in its process so its CPU can be measured.

``--mode pysfu`` runs the library as a user would: an :class:`pysfu.SFU` with
one room, clients admitted with :meth:`pysfu.Room.join` through a tiny
newline-delimited JSON adapter (see :mod:`linejson`).

``--mode relay`` is the baseline a Python user writes today with aiortc alone:
the publisher's tracks are decoded once and every subscriber's connection gets
``MediaRelay().subscribe(track)``, encoded once per subscriber. It speaks the
same protocol (the server offers, the client answers); the publisher must
connect first.

On start the server prints one line, ``{"port": P}``, to stdout. It stops on
SIGTERM/SIGINT and, with ``--exit-on-stdin-eof``, when its stdin closes (so it
never outlives the process that started it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any, Protocol

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from pysfu import SFU, IceConfig, PysfuError, SFUConfig
from pysfu._aiortc import configure_ice
from pysfu.signalling import Outbox, to_json
from pysfu.signalling.adapter import SignallingTarget, deliver_json
from pysfu.signalling.messages import ServerMessage

from .linejson import HOST, LINE_LIMIT, ROOM, LineChannel

KINDS = ("audio", "video")


async def read_hello(channel: LineChannel) -> dict[str, Any] | None:
    """The client's first line; answers and returns ``None`` if it is unusable."""
    hello = await channel.receive()
    if (
        hello is None
        or hello.get("type") != "hello"
        or not isinstance(hello.get("id"), str)
        or hello.get("role") not in ("host", "participant")
    ):
        await channel.send({"type": "error", "code": "bad_hello", "message": ""})
        return None
    return hello


class ConnectionServer:
    """Runs one handler per signalling connection and lets them end on shutdown.

    On :meth:`close` the mode's media is shut down, every signalling
    connection is closed (its handler sees end of stream and cleans up) and the
    handlers get a few seconds to finish before they are cancelled.
    """

    def __init__(self) -> None:
        self._channels: set[LineChannel] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The ``asyncio.start_server`` callback."""
        channel = LineChannel(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._channels.add(channel)
        self._tasks.add(task)
        try:
            hello = await read_hello(channel)
            if hello is not None:
                await self.serve_client(channel, hello)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            # shutting down; a cancelled handler makes asyncio's stream
            # callback print a traceback per connection, so end quietly
            pass
        finally:
            self._channels.discard(channel)
            self._tasks.discard(task)
            with contextlib.suppress(asyncio.CancelledError):
                await channel.close()

    async def serve_client(self, channel: LineChannel, hello: dict[str, Any]) -> None:
        raise NotImplementedError

    async def shutdown_media(self) -> None:
        """Stop what the mode runs (rooms, peer connections)."""

    async def close(self, timeout: float = 5.0) -> None:
        await self.shutdown_media()
        for channel in list(self._channels):
            await channel.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class Joined(SignallingTarget, Protocol):
    """A participant as :class:`ParticipantServer` uses it (local or remote)."""

    async def leave(self, reason: str = "left") -> None: ...


class ParticipantServer(ConnectionServer):
    """Admits each connection as a pysfu participant, over pysfu's JSON messages."""

    async def join(self, hello: dict[str, Any], outbox: Outbox) -> Joined:
        raise NotImplementedError

    async def serve_client(self, channel: LineChannel, hello: dict[str, Any]) -> None:
        async def outbox(message: ServerMessage) -> None:
            await channel.send(to_json(message))

        try:
            participant = await self.join(hello, outbox)
        except PysfuError as exc:
            await channel.send({"type": "error", "code": exc.code, "message": str(exc)})
            return
        try:
            while (line := await channel.receive_line()) is not None:
                await deliver_json(participant, line)
        finally:
            await participant.leave("disconnected")


class PysfuServer(ParticipantServer):
    """Admits clients into a pysfu room; one connection per participant."""

    def __init__(self, max_participants: int, shared_port: int | None = None) -> None:
        super().__init__()
        ice = IceConfig(host_addresses=(HOST,), shared_port=shared_port)
        self.sfu = SFU(SFUConfig(ice=ice))
        self.max_participants = max_participants
        self.sfu.create_room(ROOM, max_participants=max_participants)

    async def join(self, hello: dict[str, Any], outbox: Outbox) -> Joined:
        name = str(hello.get("room"))
        if name not in self.sfu.rooms and hello["role"] == "host":
            # Rooms beyond the default one are created by their host.
            self.sfu.create_room(name, max_participants=self.max_participants)
        return await self.sfu.get_room(name).join(hello["id"], hello["role"], outbox)

    async def shutdown_media(self) -> None:
        await self.sfu.close()


class RelayServer(ConnectionServer):
    """aiortc alone: decode each publisher once, encode once per subscriber.

    A ``host`` connection publishes under its ``id`` in its room; a
    ``participant`` connection receives the publisher named by ``feed`` (by
    default the room's first), waiting for it to publish.
    """

    def __init__(self) -> None:
        super().__init__()
        self.relay = MediaRelay()
        #: (room, publisher id) -> its tracks by kind
        self.tracks: dict[tuple[str, str], dict[str, MediaStreamTrack]] = {}
        self.first: dict[str, str] = {}
        self.published = asyncio.Condition()
        self.pcs: set[RTCPeerConnection] = set()
        self._notifying: set[asyncio.Task[None]] = set()

    async def _feed(self, room: str, feed: str | None) -> dict[str, MediaStreamTrack]:
        def complete() -> bool:
            name = feed or self.first.get(room)
            tracks = self.tracks.get((room, name or ""), {})
            return all(kind in tracks for kind in KINDS)

        async with self.published:
            await self.published.wait_for(complete)
        return self.tracks[(room, feed or self.first[room])]

    async def serve_client(self, channel: LineChannel, hello: dict[str, Any]) -> None:
        room = str(hello.get("room"))
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pcs.add(pc)
        try:
            if hello["role"] == "host":
                key = (room, hello["id"])
                if key in self.tracks:
                    await channel.send(
                        {"type": "error", "code": "IdTaken", "message": ""}
                    )
                    return
                self.tracks[key] = {}
                self.first.setdefault(room, hello["id"])
                pc.on("track", lambda track: self._on_publisher_track(key, track))
                for kind in KINDS:
                    pc.addTransceiver(kind, direction="recvonly")
            else:
                feed = hello.get("feed")
                tracks = await asyncio.wait_for(
                    self._feed(room, str(feed) if feed else None), timeout=60
                )
                for kind in KINDS:
                    track = self.relay.subscribe(tracks[kind])
                    pc.addTransceiver(track, direction="sendonly")
            configure_ice(pc, host_addresses=[HOST])
            await pc.setLocalDescription(await pc.createOffer())
            await channel.send({"type": "offer", "sdp": pc.localDescription.sdp})
            while (message := await channel.receive()) is not None:
                if message.get("type") == "answer":
                    answer = RTCSessionDescription(sdp=message["sdp"], type="answer")
                    await pc.setRemoteDescription(answer)
                elif message.get("type") == "leave":
                    break
        except asyncio.TimeoutError:
            await channel.send({"type": "error", "code": "NoPublisher", "message": ""})
        finally:
            self.pcs.discard(pc)
            await pc.close()

    def _on_publisher_track(
        self, key: tuple[str, str], track: MediaStreamTrack
    ) -> None:
        self.tracks[key][track.kind] = track

        async def notify() -> None:
            async with self.published:
                self.published.notify_all()

        task = asyncio.ensure_future(notify())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def shutdown_media(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.pcs)))


async def wait_for_stop(watch_stdin: bool) -> None:
    """Return on SIGTERM/SIGINT or, if ``watch_stdin``, when stdin closes."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
    if watch_stdin:
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
        )
        waiters.append(asyncio.ensure_future(stdin.read()))
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()


async def serve(
    mode: str,
    port: int,
    max_participants: int,
    watch_stdin: bool,
    shared_port: int | None = None,
) -> None:
    handler = (
        PysfuServer(max_participants, shared_port) if mode == "pysfu" else RelayServer()
    )
    server = await asyncio.start_server(handler.handle, HOST, port, limit=LINE_LIMIT)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound, "mode": mode}), flush=True)
    try:
        await wait_for_stop(watch_stdin)
    finally:
        server.close()
        await handler.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("pysfu", "relay"), required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--subscribers", type=int, default=64, help="room size (pysfu mode)"
    )
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument(
        "--shared-port",
        type=int,
        default=None,
        help="pysfu mode: every peer on this one UDP port (0: any)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop implementation (uvloop: pip install uvloop)",
    )
    args = parser.parse_args()
    level = os.environ.get("PYSFU_BENCH_SERVER_LOG", "WARNING")
    logging.basicConfig(level=level, format="server: %(name)s: %(message)s")
    main_coroutine = serve(
        args.mode, args.port, args.subscribers, args.exit_on_stdin_eof, args.shared_port
    )
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_coroutine)
    else:
        asyncio.run(main_coroutine)


if __name__ == "__main__":
    main()
