"""Keyframe detection: "does this payload start a keyframe?" per codec.

Each detector reads only the first bytes of an RTP payload (a ``memoryview``
serves, so the payload is not copied). Pure bytes: no aiortc, no asyncio.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "KEYFRAME_DETECTORS",
    "av1_starts_keyframe",
    "h264_starts_keyframe",
    "vp8_starts_keyframe",
    "vp9_starts_keyframe",
]


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


#: The detector of each codec pysfu can inspect, by lower-case codec name.
KEYFRAME_DETECTORS: dict[str, Callable[[bytes | memoryview], bool]] = {
    "vp8": vp8_starts_keyframe,
    "h264": h264_starts_keyframe,
    "vp9": vp9_starts_keyframe,
    "av1": av1_starts_keyframe,
}
