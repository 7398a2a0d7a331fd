"""RTP header extensions (RFC 8285): the one walker and what is built on it.

Every reader and writer of the extension block goes through :func:`walk`:
validating a received packet as aiortc would (:func:`valid_values`), finding
one element (:func:`find`, :func:`header_extension`, :func:`audio_level`),
renumbering and dropping elements for a subscriber
(:func:`remap_extension_ids`) and restamping abs-send-time
(:func:`stamp_abs_send_time`). :func:`walk` returns the elements as a flat
list of ints rather than yielding them: no generator frame per packet on the
hot path, and a caller that walks a block twice can keep the list.

Pure bytes: no aiortc, no asyncio, no clock (a time is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

__all__ = [
    "ANY",
    "ASCII",
    "DROP",
    "ONE_BYTE_PROFILE",
    "TWO_BYTE_PROFILE",
    "UTF8",
    "audio_level",
    "block_start",
    "extension_checks",
    "extension_id_table",
    "find",
    "find_extension",
    "header_extension",
    "remap_extension_ids",
    "rewrite_extensions",
    "stamp_abs_send_time",
    "valid_values",
    "walk",
]

#: The profile of the one-byte element form.
ONE_BYTE_PROFILE = 0xBEDE
#: The profile of the two-byte element form (its low 4 bits are "appbits").
TWO_BYTE_PROFILE = 0x1000

#: Value in an extension id table meaning "drop this extension".
DROP = 0

# What aiortc demands of the value of a known extension (else it raises):
#: no check
ANY = 0
#: UTF-8 text (mid)
UTF8 = -1
#: ASCII text (rtp-stream-id, repaired-rtp-stream-id)
ASCII = -2
# a positive number: exactly that many bytes


def block_start(data: bytes | bytearray) -> int:
    """Offset of the extension block (its profile) of RTP packet ``data``, or
    -1 when the X bit is clear. ``data`` must hold at least the first byte."""
    first = data[0]
    return 12 + 4 * (first & 0x0F) if first & 0x10 else -1


def walk(data: bytes | bytearray, start: int, past_15: bool = True) -> list[int] | None:
    """The elements of the extension block at offset ``start`` (its profile),
    as a flat list ``[id, value_offset, value_length, id, ...]``.

    Padding bytes (0) are skipped. Id 15 of the one-byte form: RFC 8285 says
    reading stops there (``past_15=False``: the elements before it); aiortc
    reads on and lists it as an element (``past_15=True``, what validation
    and the tap's own look-ups use, so that pysfu sees a received packet as
    aiortc does). ``[]`` for a profile that is neither RFC 8285 form; ``None`` when the
    block or an element runs past the end of ``data``.
    """
    size = len(data)
    if start < 0 or size < start + 4:
        return None
    end = start + 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    if size < end:
        return None
    profile = (data[start] << 8) | data[start + 1]
    pos = start + 4
    elements: list[int] = []
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            if byte >> 4 == 15 and not past_15:
                break
            length = (byte & 0x0F) + 1
            pos += 1
            if end < pos + length:
                return None
            elements += (byte >> 4, pos, length)
            pos += length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < end:
            if data[pos] == 0:  # padding
                pos += 1
                continue
            if end < pos + 2:
                return None
            ext_id = data[pos]
            length = data[pos + 1]
            pos += 2
            if end < pos + length:
                return None
            elements += (ext_id, pos, length)
            pos += length
    return elements


def valid_values(
    data: bytes | bytearray, elements: Sequence[int], checks: Sequence[int]
) -> bool:
    """Whether the values of ``elements`` (from :func:`walk`) are what
    ``checks[id]`` demands (:data:`ANY`, :data:`UTF8`, :data:`ASCII` or an
    exact length), as aiortc's parser with the same negotiated ids would."""
    known = len(checks)
    for i in range(0, len(elements), 3):
        ext_id = elements[i]
        if ext_id >= known:
            continue
        check = checks[ext_id]
        if check == ANY:
            continue
        pos = elements[i + 1]
        size = elements[i + 2]
        if check > 0:
            if size != check:
                return False
        else:
            try:
                data[pos : pos + size].decode("utf8" if check == UTF8 else "ascii")
            except UnicodeDecodeError:
                return False
    return True


def _one_byte(data: bytes | bytearray, start: int) -> bool:
    return data[start] == 0xBE and data[start + 1] == 0xDE


def find(
    data: bytes | bytearray, ext_id: int, start: int = -2, past_15: bool = False
) -> tuple[int, int]:
    """``(offset, length)`` of the value of extension ``ext_id``, or
    ``(-1, 0)``. ``start``: the block's offset if known (-1: none; -2: read
    it from ``data``). ``past_15``: see :func:`walk`."""
    if start == -2:
        if len(data) < 12:
            return -1, 0
        start = block_start(data)
    elements = walk(data, start, past_15) if start >= 0 else None
    if elements:
        for i in range(0, len(elements), 3):
            if elements[i] == ext_id:
                return elements[i + 1], elements[i + 2]
    return -1, 0


def find_extension(data: bytes | bytearray, header: Any, ext_id: int) -> int:
    """Offset of the value of extension ``ext_id`` in packet ``data``, or -1.

    ``header``: a parsed :class:`pysfu.rtp.header.RtpHeader` (its elements,
    walked when it was parsed, are reused), or anything else (e.g. an aiortc
    ``RtpPacket``, ``None``): the block is then walked here. Reads on past an
    id 15, as aiortc does (see :func:`walk`): what aiortc would find in a
    received packet.
    """
    elements: list[int] | None = getattr(header, "extension_elements", None)
    if elements is None:
        return find(data, ext_id, getattr(header, "extension_start", -2), True)[0]
    for i in range(0, len(elements), 3):
        if elements[i] == ext_id:
            return elements[i + 1]
    return -1


def header_extension(data: bytes | bytearray, ext_id: int) -> bytes | None:
    """The value of header extension ``ext_id`` in an RTP packet (RFC 8285), or
    ``None`` when the packet has none or its extension block is malformed."""
    if not 0 < ext_id < 256:
        return None
    at, length = find(data, ext_id)
    return bytes(data[at : at + length]) if at >= 0 else None


def audio_level(data: bytes | bytearray, ext_id: int) -> int | None:
    """RFC 6464 client-to-mixer audio level of an RTP packet, in dBov (0 is the
    loudest, -127 silence), or ``None`` without a (valid) level extension."""
    if not 0 < ext_id < 256:
        return None
    at, length = find(data, ext_id)
    if at < 0 or not length:
        return None
    return -(data[at] & 0x7F)  # the high bit is the voice activity flag


def remap_extension_ids(buf: bytearray, table: Sequence[int]) -> None:
    """Renumber RTP header extensions in place using ``table[old_id] -> new_id``.

    An element whose new id is :data:`DROP` is overwritten with zero bytes,
    which RFC 8285 defines as padding, so the packet keeps its length. Used
    because each peer connection negotiates its own extension ids, and because
    some extensions (``sdes:mid``) must not be forwarded at all. A malformed
    block is left as it is, and so is everything from an id 15 on (RFC 8285
    readers stop there).
    """
    start = block_start(buf)
    elements = walk(buf, start, False) if start >= 0 else None
    if not elements:
        return
    known = len(table)
    if _one_byte(buf, start):
        for i in range(0, len(elements), 3):
            ext_id = elements[i]
            at = elements[i + 1]
            new_id = table[ext_id] if ext_id < known else DROP
            if new_id == DROP:
                buf[at - 1 : at + elements[i + 2]] = bytes(1 + elements[i + 2])
            else:
                buf[at - 1] = (new_id << 4) | (buf[at - 1] & 0x0F)
    else:
        for i in range(0, len(elements), 3):
            ext_id = elements[i]
            at = elements[i + 1]
            new_id = table[ext_id] if ext_id < known else DROP
            if new_id == DROP:
                buf[at - 2 : at + elements[i + 2]] = bytes(2 + elements[i + 2])
            else:
                buf[at - 2] = new_id


def stamp_abs_send_time(buf: bytearray, ext_id: int, now: float) -> None:
    """Write ``now`` (seconds, any clock) into the abs-send-time extension
    ``ext_id`` of ``buf``, if the packet carries it.

    The value is 6.18 fixed point seconds modulo 64 s; receivers only use
    its differences, so a monotonic clock serves. Stamped when pysfu sends,
    a subscriber's bandwidth estimate measures the SFU -> subscriber path,
    not the publisher's uplink and the SFU's event loop as well.
    """
    at, length = find(buf, ext_id, -2, True)  # as find_extension
    if at > 0 and length >= 3:
        value = int(now * 262144) & 0xFFFFFF
        buf[at] = value >> 16
        buf[at + 1] = (value >> 8) & 0xFF
        buf[at + 2] = value & 0xFF


def rewrite_extensions(
    buf: bytearray,
    table: Sequence[int] | None,
    abs_send_time_id: int,
    now: float,
    elements: list[int] | None = None,
) -> None:
    """:func:`remap_extension_ids` (if ``table``) and then
    :func:`stamp_abs_send_time` (if ``abs_send_time_id``, the id after
    renumbering) in one walk of the block: a forwarded packet's copy for a
    subscriber. Like renumbering, leaves a malformed block as it is, and
    everything from an id 15 of the one-byte form on.

    ``elements``: the block's elements as :func:`walk` listed them when the
    packet was parsed (``past_15=True``; e.g. ``RtpHeader.extension_elements``
    of the bytes ``buf`` copies), to skip walking it again; ``None``: walk.
    """
    start = block_start(buf)
    if start < 0:
        return
    one_byte = _one_byte(buf, start)
    if elements is None or (one_byte and 15 in elements[::3]):
        # the given list reads on past an id 15; renumbering stops there
        elements = walk(buf, start, False)
    if not elements:
        return
    known = len(table) if table is not None else 0
    for i in range(0, len(elements), 3):
        ext_id = elements[i]
        at = elements[i + 1]
        if table is not None:
            new_id = table[ext_id] if ext_id < known else DROP
            if new_id == DROP:
                head = 1 if one_byte else 2
                buf[at - head : at + elements[i + 2]] = bytes(head + elements[i + 2])
                continue
            if one_byte:
                buf[at - 1] = (new_id << 4) | (buf[at - 1] & 0x0F)
            else:
                buf[at - 2] = new_id
            ext_id = new_id
        if ext_id == abs_send_time_id and elements[i + 2] >= 3:
            value = int(now * 262144) & 0xFFFFFF
            buf[at] = value >> 16
            buf[at + 1] = (value >> 8) & 0xFF
            buf[at + 2] = value & 0xFF


#: Tables handed out so far: equal tables are one object, so subscribers
#: with the same numbering share one renumbered copy of each packet.
_TABLES: dict[tuple[int, ...], tuple[int, ...]] = {}


def extension_id_table(
    source: Mapping[str, int],
    destination: Mapping[str, int],
    forwarded: AbstractSet[str],
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


def extension_checks(ids: Any) -> list[int]:
    """The ``checks`` table for :func:`pysfu.rtp.header.parse_header` from
    negotiated extension ids: any object with aiortc's ``HeaderExtensions``
    id attributes (the order mirrors aiortc's own if/elif chain)."""
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
