"""A lean RTP header parser for the receive path (RFC 3550 section 5.1, RFC 8285).

aiortc's ``RtpPacket.parse`` builds a packet object, copies the payload and
decodes every header extension into a dataclass, for every packet. A
forwarding SFU reads five header fields and, now and then, one extension.
:func:`parse_header` reads the fixed header, checks the CSRC list, extension
block and padding the way aiortc does, and records where things are; it
accepts exactly the packets aiortc's parser accepts (tests/test_rtp_header.py
checks this against aiortc as the oracle). :class:`RtpHeader` offers
``payload`` and ``extensions`` too, computed only when read, so code written
against aiortc's ``RtpPacket`` keeps working.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

_FIXED = struct.Struct("!BBHII")

# What aiortc demands of the value of a known extension (else it raises):
#: no check
ANY = 0
#: UTF-8 text (mid)
UTF8 = -1
#: ASCII text (rtp-stream-id, repaired-rtp-stream-id)
ASCII = -2
# a positive number: exactly that many bytes


class RtpHeader:
    """The header fields of one RTP packet and the offsets of its parts."""

    __slots__ = (
        "_data",
        "_extensions_map",
        "extension_start",
        "marker",
        "padding_size",
        "payload_start",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    _data: bytes
    _extensions_map: Any
    marker: int
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    #: Offset of the header extension block (its profile), or -1 without one.
    extension_start: int
    #: Offset of the payload, after CSRCs and extensions.
    payload_start: int
    padding_size: int

    @property
    def payload(self) -> bytes:
        """The payload without padding (a copy, made when read)."""
        return self._data[self.payload_start : len(self._data) - self.padding_size]

    @property
    def extensions(self) -> Any:
        """aiortc's ``HeaderExtensions`` of this packet (decoded when read)."""
        from aiortc.rtp import HeaderExtensions

        start = self.extension_start
        if start < 0 or self._extensions_map is None:
            return HeaderExtensions()
        data = self._data
        profile = (data[start] << 8) | data[start + 1]
        return self._extensions_map.get(profile, data[start + 4 : self.payload_start])


def parse_header(
    data: bytes, checks: Sequence[int] = (), extensions_map: Any = None
) -> RtpHeader | None:
    """Parse the header of RTP packet ``data``; ``None`` if it is malformed.

    ``checks[id]`` says what the value of extension ``id`` must be (:data:`ANY`,
    :data:`UTF8`, :data:`ASCII` or an exact length), as aiortc's parser with
    the same negotiated ids would demand. ``extensions_map`` (aiortc's
    ``HeaderExtensionsMap``) is only used if :attr:`RtpHeader.extensions` is
    read.
    """
    length = len(data)
    if length < 12:
        return None
    first, second, sequence_number, timestamp, ssrc = _FIXED.unpack_from(data)
    if first & 0xC0 != 0x80:
        return None
    pos = 12 + 4 * (first & 0x0F)
    if length < pos:
        return None
    extension_start = -1
    if first & 0x10:
        if length < pos + 4:
            return None
        extension_start = pos
        end = pos + 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if length < end:
            return None
        profile = (data[pos] << 8) | data[pos + 1]
        if (profile == 0xBEDE or profile == 0x1000) and not _valid_elements(
            data, pos + 4, end, profile == 0xBEDE, checks
        ):
            return None
        pos = end
    padding_size = 0
    if first & 0x20:
        padding_size = data[-1]
        if not padding_size or padding_size > length - pos:
            return None
    header = RtpHeader()
    header._data = data
    header._extensions_map = extensions_map
    header.marker = second >> 7
    header.payload_type = second & 0x7F
    header.sequence_number = sequence_number
    header.timestamp = timestamp
    header.ssrc = ssrc
    header.extension_start = extension_start
    header.payload_start = pos
    header.padding_size = padding_size
    return header


def _valid_elements(
    data: bytes, pos: int, end: int, one_byte: bool, checks: Sequence[int]
) -> bool:
    """Whether the RFC 8285 elements in ``data[pos:end]`` are well formed."""
    known = len(checks)
    while pos < end:
        if data[pos] == 0:  # padding
            pos += 1
            continue
        if one_byte:
            ext_id = data[pos] >> 4
            size = (data[pos] & 0x0F) + 1
            pos += 1
        else:
            if end < pos + 2:
                return False
            ext_id = data[pos]
            size = data[pos + 1]
            pos += 2
        if end < pos + size:
            return False
        if ext_id < known:
            check = checks[ext_id]
            if check > 0:
                if size != check:
                    return False
            elif check != ANY:
                try:
                    data[pos : pos + size].decode("utf8" if check == UTF8 else "ascii")
                except UnicodeDecodeError:
                    return False
        pos += size
    return True


def find_extension(data: bytes, header: Any, ext_id: int) -> int:
    """Offset of the value of extension ``ext_id`` in packet ``data``, or -1.

    ``header`` is a parsed :class:`RtpHeader` (its offsets are trusted).
    """
    start = getattr(header, "extension_start", -2)
    if start == -2:  # an aiortc RtpPacket: find the block ourselves
        start = 12 + 4 * (data[0] & 0x0F) if data[0] & 0x10 else -1
    if start < 0 or len(data) < start + 4:
        return -1
    profile = (data[start] << 8) | data[start + 1]
    pos = start + 4
    end = min(pos + 4 * ((data[start + 2] << 8) | data[start + 3]), len(data))
    if profile == 0xBEDE:
        while pos < end:
            byte = data[pos]
            if byte == 0:
                pos += 1
                continue
            if byte >> 4 == ext_id:
                return pos + 1
            pos += 2 + (byte & 0x0F)
    elif profile == 0x1000:
        while pos + 1 < end:
            if data[pos] == 0:
                pos += 1
                continue
            if data[pos] == ext_id:
                return pos + 2
            pos += 2 + data[pos + 1]
    return -1


def extension_checks(ids: Any) -> list[int]:
    """The ``checks`` table for :func:`parse_header` from aiortc's negotiated
    ``HeaderExtensions`` ids (the order mirrors aiortc's own if/elif chain)."""
    checks = [ANY] * 256
    rules = [
        (ids.transport_sequence_number, 2),
        (ids.audio_level, 1),
        (ids.transmission_offset, 3),
        (ids.abs_send_time, 3),
        (ids.rtp_stream_id, ASCII),
        (ids.repaired_rtp_stream_id, ASCII),
        (ids.mid, UTF8),
    ]
    for ext_id, rule in rules:  # reversed priority: aiortc's first match wins
        if ext_id is not None and 0 <= ext_id < 256:
            checks[ext_id] = rule
    return checks
