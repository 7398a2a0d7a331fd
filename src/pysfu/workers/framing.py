"""Sans-I/O framing of the pool's pipe protocol: length-prefixed JSON objects.

Each frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON holding one object. :func:`encode_frame` builds a frame;
:class:`FrameDecoder` is fed bytes as they arrive, in any chunking, and returns
the complete objects. Nothing here reads or writes a socket, so it is tested
with plain bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ..errors import FrameError

__all__ = ["MAX_FRAME", "FrameDecoder", "FrameError", "encode_frame"]

_HEADER = struct.Struct("!I")
#: Largest frame body accepted, in bytes. A frame carries one signalling
#: message (an SDP of at most 64 KiB, plus JSON escaping) or a stats snapshot.
MAX_FRAME = 16 * 1024 * 1024


def encode_frame(obj: dict[str, Any]) -> bytes:
    """The frame carrying ``obj`` (a JSON-serialisable dict)."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Turns a byte stream into the objects its frames carry."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return every object completed by them, in order.

        Raises :class:`FrameError` for an oversized frame, a body that is not
        JSON or not an object; the decoder is unusable afterwards.
        """
        self._buffer += data
        frames: list[dict[str, Any]] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max_frame:
                raise FrameError(f"frame of {length} bytes exceeds {self._max_frame}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            try:
                obj = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise FrameError(f"frame is not JSON: {exc}") from exc
            if not isinstance(obj, dict):
                raise FrameError("frame is not a JSON object")
            frames.append(obj)
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not complete a frame yet."""
        return len(self._buffer)
