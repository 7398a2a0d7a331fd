"""Byte-level RTP helpers for the forwarding hot path.

Forwarded packets are never re-serialised: a subscriber gets a copy of the
publisher's bytes with the fixed header fields rewritten in place
(RFC 3550 section 5.1) and header extension IDs renumbered (RFC 8285).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import cast

from .._rtp import find_extension

__all__ = [
    "DROP",
    "KEYFRAME_DETECTORS",
    "audio_level",
    "av1_starts_keyframe",
    "extension_id_table",
    "h264_starts_keyframe",
    "header_extension",
    "payload_offset",
    "remap_extension_ids",
    "rewrite_header",
    "stamp_abs_send_time",
    "vp8_starts_keyframe",
    "vp9_starts_keyframe",
]

_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC at offset 2

#: Value in an extension id table meaning "drop this extension".
DROP = 0


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
    _HEADER.pack_into(buf, 2, sequence_number, timestamp, ssrc)
    return buf


def remap_extension_ids(buf: bytearray, table: Sequence[int]) -> None:
    """Renumber RTP header extensions in place using ``table[old_id] -> new_id``.

    An element whose new id is :data:`DROP` is overwritten with zero bytes,
    which RFC 8285 defines as padding, so the packet keeps its length. Used
    because each peer connection negotiates its own extension ids, and because
    some extensions (``sdes:mid``) must not be forwarded at all.
    """
    if not buf[0] & 0x10:
        return
    start = 12 + 4 * (buf[0] & 0x0F)
    if len(buf) < start + 4:
        return
    profile = (buf[start] << 8) | buf[start + 1]
    end = start + 4 + 4 * ((buf[start + 2] << 8) | buf[start + 3])
    end = min(end, len(buf))
    pos = start + 4
    if profile == 0xBEDE:  # one-byte header
        while pos < end:
            ext_id = buf[pos] >> 4
            if ext_id == 0:
                pos += 1
                continue
            if ext_id == 15:
                break
            length = (buf[pos] & 0x0F) + 1
            new_id = table[ext_id] if ext_id < len(table) else DROP
            if new_id == DROP:
                buf[pos : pos + 1 + length] = bytes(min(1 + length, end - pos))
            else:
                buf[pos] = (new_id << 4) | (buf[pos] & 0x0F)
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:  # two-byte header
        while pos + 1 < end:
            ext_id = buf[pos]
            if ext_id == 0:
                pos += 1
                continue
            length = buf[pos + 1]
            new_id = table[ext_id] if ext_id < len(table) else DROP
            if new_id == DROP:
                buf[pos : pos + 2 + length] = bytes(min(2 + length, end - pos))
            else:
                buf[pos] = new_id
            pos += 2 + length


#: Tables handed out so far: equal tables are one object, so subscribers
#: with the same numbering share one renumbered copy of each packet.
_TABLES: dict[tuple[int, ...], tuple[int, ...]] = {}


def stamp_abs_send_time(buf: bytearray, ext_id: int, now: float) -> None:
    """Write ``now`` (seconds, any clock) into the abs-send-time extension
    ``ext_id`` of ``buf``, if the packet carries it.

    The value is 6.18 fixed point seconds modulo 64 s; receivers only use
    its differences, so a monotonic clock serves. Stamped when pysfu sends,
    a subscriber's bandwidth estimate measures the SFU -> subscriber path,
    not the publisher's uplink and the SFU's event loop as well.
    """
    at = find_extension(cast(bytes, buf), None, ext_id)  # reads indices only
    if 0 < at <= len(buf) - 3:
        value = int(now * 262144) & 0xFFFFFF
        buf[at] = value >> 16
        buf[at + 1] = (value >> 8) & 0xFF
        buf[at + 2] = value & 0xFF


def extension_id_table(
    source: dict[str, int], destination: dict[str, int], forwarded: AbstractSet[str]
) -> tuple[int, ...] | None:
    """Build the id table translating ``source`` ids to ``destination`` ids.

    ``source`` and ``destination`` map extension URIs to negotiated ids. Only
    URIs in ``forwarded`` survive. Returns ``None`` when the packet can be
    forwarded untouched (identical numbering and nothing to drop).
    """
    table = [DROP] * 256
    identity = True
    for uri, old_id in source.items():
        new_id = destination.get(uri, DROP) if uri in forwarded else DROP
        table[old_id] = new_id
        if new_id != old_id:
            identity = False
    if identity:
        return None
    if len(_TABLES) > 1024:  # bounded: numberings in use are few
        _TABLES.clear()
    frozen = tuple(table)
    return _TABLES.setdefault(frozen, frozen)


def payload_offset(data: bytes) -> int:
    """Offset of the RTP payload (after CSRCs and extensions)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    return offset


def header_extension(data: bytes, ext_id: int) -> bytes | None:
    """The value of header extension ``ext_id`` in an RTP packet (RFC 8285), or
    ``None`` when the packet has none or its extension block is malformed."""
    if len(data) < 12 or not data[0] & 0x10 or not 0 < ext_id < 256:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if len(data) < start + 4:
        return None
    profile = (data[start] << 8) | data[start + 1]
    end = min(start + 4 + 4 * ((data[start + 2] << 8) | data[start + 3]), len(data))
    pos = start + 4
    if profile == 0xBEDE:  # one-byte header
        while pos < end:
            element_id = data[pos] >> 4
            if element_id == 0:
                pos += 1
                continue
            if element_id == 15:
                return None
            length = (data[pos] & 0x0F) + 1
            if element_id == ext_id:
                return (
                    bytes(data[pos + 1 : pos + 1 + length])
                    if pos + length < end
                    else None
                )
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:  # two-byte header
        while pos + 1 < end:
            element_id = data[pos]
            if element_id == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if element_id == ext_id:
                return (
                    bytes(data[pos + 2 : pos + 2 + length])
                    if pos + 2 + length <= end
                    else None
                )
            pos += 2 + length
    return None


def audio_level(data: bytes, ext_id: int) -> int | None:
    """RFC 6464 client-to-mixer audio level of an RTP packet, in dBov (0 is the
    loudest, -127 silence), or ``None`` without a (valid) level extension."""
    value = header_extension(data, ext_id)
    if not value:
        return None
    return -(value[0] & 0x7F)  # the high bit is the voice activity flag


# --------------------------------------------------------------------------
# Keyframe detection: "does this packet start a keyframe?" per codec.


def vp8_starts_keyframe(payload: bytes | memoryview) -> bool:
    """RFC 7741: first partition start of a frame whose P bit is 0."""
    if len(payload) < 1:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit set, partition index 0
        return False
    pos = 1
    if first & 0x80:  # X: extended control bits
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


def h264_starts_keyframe(payload: bytes | memoryview) -> bool:
    """RFC 6184: an SPS or an IDR slice start (single, STAP-A or FU-A)."""
    if len(payload) < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, NAL unit, repeated
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) >= 2:  # FU-A
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def vp9_starts_keyframe(payload: bytes | memoryview) -> bool:
    """VP9 RTP payload format: B (start of frame) set and P (inter-predicted) clear."""
    return len(payload) >= 1 and bool(payload[0] & 0x08) and not payload[0] & 0x40


def av1_starts_keyframe(payload: bytes | memoryview) -> bool:
    """AV1 RTP payload format: N bit, first packet of a coded video sequence."""
    return len(payload) >= 1 and bool(payload[0] & 0x08)


KEYFRAME_DETECTORS = {
    "vp8": vp8_starts_keyframe,
    "h264": h264_starts_keyframe,
    "vp9": vp9_starts_keyframe,
    "av1": av1_starts_keyframe,
}
