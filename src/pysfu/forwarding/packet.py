"""Byte-level RTP helpers of the forwarding hot path: the old home of what
now lives in :mod:`pysfu.rtp`, kept so that code importing from here works.

The same objects as :mod:`pysfu.rtp.header`, :mod:`pysfu.rtp.extensions` and
:mod:`pysfu.rtp.keyframes`; new code should import from there.
"""

from __future__ import annotations

from ..rtp.extensions import (
    DROP,
    audio_level,
    extension_id_table,
    header_extension,
    remap_extension_ids,
    stamp_abs_send_time,
)
from ..rtp.header import payload_offset, rewrite_header
from ..rtp.keyframes import (
    KEYFRAME_DETECTORS,
    av1_starts_keyframe,
    h264_starts_keyframe,
    vp8_starts_keyframe,
    vp9_starts_keyframe,
)

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
