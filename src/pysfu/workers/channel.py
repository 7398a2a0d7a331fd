"""Frames over an asyncio stream: the I/O half of the pipe protocol."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any

from .framing import FrameDecoder, encode_frame

__all__ = [
    "FrameChannel",
]


class FrameChannel:
    """Sends and receives framed JSON objects over one connected socket.

    :meth:`send` only buffers (the transport writes in the background), so
    the SFU's outbox never waits on the other process.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._ready: deque[dict[str, Any]] = deque()

    @classmethod
    async def open(cls, sock: socket.socket) -> FrameChannel:
        """Take over a connected stream socket (one end of a socketpair)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()

    def send(self, obj: dict[str, Any]) -> None:
        """Queue one object; dropped silently once the channel is closing."""
        if not self._writer.is_closing():
            self._writer.write(encode_frame(obj))

    async def receive(self) -> dict[str, Any] | None:
        """The next object, or ``None`` once the other end closed.

        Raises :class:`~pysfu.workers.framing.FrameError` on a corrupt stream.
        """
        while not self._ready:
            try:
                data = await self._reader.read(1 << 16)
            except ConnectionError:
                data = b""
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    async def close(self) -> None:
        """Flush what was queued (briefly) and close the socket."""
        if not self._writer.is_closing():
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(self._writer.drain(), 2.0)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
