"""The recording file format: raw RTP with arrival times and sender reports.

A recording holds one published track, exactly as the server received it
(after RTX unwrap), so it costs a write to make and keeps everything needed
to convert it later without decoding. Layout, all integers big-endian::

    magic    b"PYSFUREC" + version (u16, 1)
    header   u32 length + UTF-8 JSON (:class:`TrackHeader`)
    records  u8 type, u64 arrival (Unix time in ns), u32 length, body
             type 1: an RTP packet (plaintext, RTX unwrapped)
             type 2: the publisher's RTCP sender report for this track:
                     u64 NTP timestamp, u32 RTP timestamp

Nothing here does I/O beyond the file object it is given.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

__all__ = [
    "MAGIC",
    "RECORD_RTP",
    "RECORD_SENDER_REPORT",
    "BadRecording",
    "Record",
    "TrackHeader",
    "decode_record",
    "encode_file_header",
    "encode_record",
    "encode_sender_report",
    "read_recording",
]

MAGIC = b"PYSFUREC" + struct.pack("!H", 1)
RECORD_RTP = 1
RECORD_SENDER_REPORT = 2
_RECORD = struct.Struct("!BQI")
_SENDER_REPORT = struct.Struct("!QI")
#: No record is larger than a UDP datagram; a bigger length means a corrupt file.
_MAX_RECORD = 65536


class BadRecording(ValueError):
    """The file is not a pysfu recording, or is damaged before its end."""


@dataclass(frozen=True)
class TrackHeader:
    """What a recording says about its track."""

    room_id: str
    participant_id: str
    track_id: str
    kind: str
    #: e.g. ``"video/VP8"``, ``"audio/opus"``.
    mime_type: str
    clock_rate: int
    channels: int | None = None
    payload_type: int = 0
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: Unix time (s) when recording started.
    started_at: float = 0.0

    @property
    def codec_name(self) -> str:
        """Lower-case codec name, e.g. ``"vp8"``."""
        return self.mime_type.split("/", 1)[1].lower()


@dataclass(frozen=True)
class Record:
    """One entry of a recording."""

    type: int
    #: Unix time in ns at which the server received it.
    arrival_ns: int
    body: bytes

    def sender_report(self) -> tuple[int, int]:
        """``(ntp_timestamp, rtp_timestamp)`` of a sender-report record."""
        ntp, rtp = _SENDER_REPORT.unpack(self.body)
        return int(ntp), int(rtp)


def encode_file_header(header: TrackHeader) -> bytes:
    """The bytes a recording file starts with."""
    body = json.dumps(asdict(header), separators=(",", ":")).encode()
    return MAGIC + struct.pack("!I", len(body)) + body


def encode_record(kind: int, arrival_ns: int, body: bytes) -> bytes:
    """One record, ready to be appended to a recording."""
    return _RECORD.pack(kind, arrival_ns, len(body)) + body


def decode_record(data: bytes) -> Record:
    """One record as :func:`encode_record` made it."""
    kind, arrival, size = _RECORD.unpack_from(data)
    return Record(kind, arrival, data[_RECORD.size : _RECORD.size + size])


def encode_sender_report(ntp_timestamp: int, rtp_timestamp: int) -> bytes:
    """The body of a sender-report record."""
    return _SENDER_REPORT.pack(ntp_timestamp, rtp_timestamp)


def read_recording(file: BinaryIO) -> tuple[TrackHeader, Iterator[Record]]:
    """Read a recording's header, and an iterator over its records.

    A record cut short at the end of the file (the server stopped while
    writing) ends the iteration quietly; anything else malformed raises
    :class:`BadRecording`.
    """
    if file.read(len(MAGIC)) != MAGIC:
        raise BadRecording("not a pysfu recording (bad magic or version)")
    raw = file.read(4)
    if len(raw) < 4:
        raise BadRecording("truncated header")
    (length,) = struct.unpack("!I", raw)
    try:
        fields = json.loads(file.read(length))
        header = TrackHeader(**fields)
    except (ValueError, TypeError) as exc:
        raise BadRecording(f"bad header: {exc}") from exc

    def records() -> Iterator[Record]:
        while True:
            head = file.read(_RECORD.size)
            if len(head) < _RECORD.size:
                return
            kind, arrival, size = _RECORD.unpack(head)
            if size > _MAX_RECORD or kind not in (RECORD_RTP, RECORD_SENDER_REPORT):
                raise BadRecording(f"bad record (type {kind}, {size} bytes)")
            body = file.read(size)
            if len(body) < size:
                return
            yield Record(kind, arrival, body)

    return header, records()
