"""A lean RTP header parser and rewriter (RFC 3550 section 5.1, RFC 8285).

aiortc's ``RtpPacket.parse`` builds a packet object, copies the payload and
decodes every header extension into a dataclass, for every packet. A
forwarding SFU reads five header fields and, now and then, one extension.
:func:`parse_header` reads the fixed header, checks the CSRC list, extension
block and padding the way aiortc does, and records where things are; it
accepts exactly the packets aiortc's parser accepts (tests/unit/test_rtp_header.py
checks this against aiortc as the oracle). :class:`RtpHeader` offers
``payload`` too, computed only when read. (aiortc's decoded
``HeaderExtensions`` of a header: :func:`pysfu._aiortc.header_extensions`.)

Forwarded packets are never re-serialised: :func:`rewrite_header` gives a
subscriber a copy of the publisher's bytes with the fixed header fields
replaced. Pure bytes: no aiortc, no asyncio, no clock.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .extensions import ONE_BYTE_PROFILE, TWO_BYTE_PROFILE, valid_values, walk

__all__ = [
    "REWRITTEN_FIELDS",
    "RtpHeader",
    "parse_header",
    "payload_offset",
    "rewrite_header",
]

_FIXED = struct.Struct("!BBHII")

#: Sequence number, timestamp and SSRC, packed at offset 2 of an RTP packet:
#: what :func:`rewrite_header` (and ``RtpOutput.send_rewritten``) replace.
REWRITTEN_FIELDS = struct.Struct("!HII")


class RtpHeader:
    """The header fields of one RTP packet and the offsets of its parts."""

    __slots__ = (
        "data",
        "extension_elements",
        "extension_start",
        "marker",
        "padding_size",
        "payload_start",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    #: The whole packet, as parsed.
    data: bytes
    marker: int
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    #: Offset of the header extension block (its profile), or -1 without one.
    extension_start: int
    #: The block's elements as :func:`pysfu.rtp.extensions.walk` lists them
    #: (walked once, to validate them), or ``None`` without an RFC 8285 block.
    extension_elements: list[int] | None
    #: Offset of the payload, after CSRCs and extensions.
    payload_start: int
    padding_size: int

    @property
    def payload(self) -> bytes:
        """The payload without padding (a copy, made when read)."""
        return self.data[self.payload_start : len(self.data) - self.padding_size]


def parse_header(data: bytes, checks: Sequence[int] = ()) -> RtpHeader | None:
    """Parse the header of RTP packet ``data``; ``None`` if it is malformed.

    ``checks[id]`` says what the value of extension ``id`` must be (see
    :func:`pysfu.rtp.extensions.valid_values`), as aiortc's parser with the
    same negotiated ids would demand.
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
    elements = None
    if first & 0x10:
        if length < pos + 4:
            return None
        extension_start = pos
        end = pos + 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if length < end:
            return None
        profile = (data[pos] << 8) | data[pos + 1]
        # aiortc reads exactly these two profiles (no two-byte appbits)
        if profile in (ONE_BYTE_PROFILE, TWO_BYTE_PROFILE):
            elements = walk(data, pos)
            if elements is None or (
                elements and checks and not valid_values(data, elements, checks)
            ):
                return None
        pos = end
    padding_size = 0
    if first & 0x20:
        padding_size = data[-1]
        if not padding_size or padding_size > length - pos:
            return None
    header = RtpHeader()
    header.data = data
    header.marker = second >> 7
    header.payload_type = second & 0x7F
    header.sequence_number = sequence_number
    header.timestamp = timestamp
    header.ssrc = ssrc
    header.extension_start = extension_start
    header.extension_elements = elements
    header.payload_start = pos
    header.padding_size = padding_size
    return header


def payload_offset(data: bytes | bytearray) -> int:
    """Offset of the RTP payload (after CSRCs and extensions)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    return offset


def rewrite_header(
    data: bytes | bytearray,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
) -> bytearray:
    """Return a copy of an RTP packet with PT, sequence, timestamp and SSRC replaced.

    The marker bit, CSRCs, extensions and payload are kept as they are.
    """
    buf = bytearray(data)
    buf[1] = (buf[1] & 0x80) | payload_type
    REWRITTEN_FIELDS.pack_into(buf, 2, sequence_number, timestamp, ssrc)
    return buf
