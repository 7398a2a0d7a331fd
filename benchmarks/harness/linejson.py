"""The benchmark's signalling: newline-delimited JSON over a plain TCP stream.

Both server modes speak the same shape. A client opens a connection and sends
a hello, ``{"type": "hello", "room": ..., "id": ..., "role": "host" |
"participant"}``; from then on the server sends offers (``{"type": "offer",
"sdp": ...}``) and the client answers each one (``{"type": "answer", "sdp":
...}``). In pysfu mode every other line is a pysfu signalling message in its
JSON form (``pysfu.signalling.to_json``); clients ignore what they do not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

#: Everything runs on loopback.
HOST = "127.0.0.1"
#: The one room of a benchmark run.
ROOM = "bench"
#: Longest line accepted (SDP offers with many m-lines can exceed asyncio's
#: default limit of 64 KiB).
LINE_LIMIT = 1 << 20


class LineChannel:
    """One signalling connection: JSON objects in, JSON objects out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = HOST) -> LineChannel:
        reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
        return cls(reader, writer)

    async def send(self, message: Mapping[str, Any]) -> None:
        self.writer.write((json.dumps(message) + "\n").encode())
        await self.writer.drain()

    async def receive_line(self) -> bytes | None:
        """The next raw line without its newline, or ``None`` at end of stream."""
        line = await self.reader.readline()
        return line.rstrip(b"\n") if line else None

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON object, or ``None`` at end of stream."""
        while (line := await self.receive_line()) is not None:
            if not line.strip():
                continue
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {line[:80]!r}")
            return value
        return None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
