"""An Opus stream to copy into an MP4 file: one that carries an OpusHead.

MP4's Opus sample entry needs the stream's OpusHead (FFmpeg writes it as the
``dOps`` box and refuses the file without one). A muxing-only stream
(``add_mux_stream``) has no codec context, so PyAV cannot set its
extradata; and a stream with a codec context would open an encoder. The one
way left in PyAV is ``add_stream_from_template``, which copies a demuxed
stream's parameters, extradata included, and opens no codec for the output:
so this module builds the smallest Ogg Opus file in memory (its OpusHead and
OpusTags pages, RFC 7845, and one empty packet) and demuxes it, which gives
such a stream. Opening it, FFmpeg's stream probe (``avformat_find_stream_info``,
which PyAV's ``av.open`` always runs) initialises its Opus decoder for that
synthetic stream, as its trace log shows: no recorded media goes through a
codec, and this runs only when converting to MP4 (never while recording:
live files are WebM or Matroska).
"""

from __future__ import annotations

import io
import struct
from typing import Any

import av

__all__ = ["opus_head", "opus_template"]

_OGG_CRC_POLY = 0x04C11DB7  # Ogg's CRC-32: MSB first, no reflection, init 0


def opus_head(channels: int, sample_rate: int = 48000, pre_skip: int = 0) -> bytes:
    """The 19-byte OpusHead of a mono or stereo stream (RFC 7845 5.1:
    version 1, output gain 0, channel mapping family 0). WebRTC's Opus
    packets come without a pre-skip: 0 keeps every sample."""
    if channels not in (1, 2):
        raise ValueError(f"Opus with {channels} channels: mono or stereo only")
    return b"OpusHead" + struct.pack(
        "<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0
    )


def _crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ _OGG_CRC_POLY if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packet: bytes, sequence: int, flags: int, granule: int = 0) -> bytes:
    """One Ogg page holding one whole packet (stream serial 1)."""
    lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
    header = (
        b"OggS"
        + bytes([0, flags])
        + struct.pack("<qIII", granule, 1, sequence, 0)
        + bytes([len(lacing), *lacing])
    )
    crc = _crc(header + packet)
    return header[:22] + struct.pack("<I", crc) + header[26:] + packet


def opus_template(channels: int, sample_rate: int = 48000) -> Any:
    """A demuxed Opus stream whose extradata is :func:`opus_head`: pass it
    to ``container.add_stream_from_template``. Nothing is decoded."""
    tags = b"OpusTags" + struct.pack("<I", 5) + b"pysfu" + struct.pack("<I", 0)
    # and one empty 20 ms packet (a TOC byte alone): FFmpeg's Ogg demuxer
    # ends in an error before the first audio page
    ogg = (
        _ogg_page(opus_head(channels, sample_rate), 0, 0x02)
        + _ogg_page(tags, 1, 0)
        + _ogg_page(b"\xfc", 2, 0x04, granule=960)
    )
    container = av.open(io.BytesIO(ogg), format="ogg")
    (stream,) = container.streams.audio
    return stream
