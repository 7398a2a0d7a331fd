"""From recorded RTP to frames and into a container, without decoding.

The pieces both conversions share: the offline one (:func:`convert`, every
packet known up front) and the live one (:class:`LiveMuxer`, packets as they
arrive). Packets go in sequence order into a :class:`FrameAssembler`, which
depayloads complete frames and drops a frame with a missing packet together
with everything after it up to the next keyframe, so loss makes the file
skip, never decode garbage. :class:`ReorderBuffer` puts live packets back in
order within a bounded window. :func:`track_clock` maps a track's RTP time
onto the publisher's sender-report clock (or arrival time), which lines up a
publisher's audio and video.
"""

from __future__ import annotations

import fractions
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from ..rtp.header import payload_offset
from ..rtp.keyframes import KEYFRAME_DETECTORS
from .bitstream import h264_sps_size, vp8_frame_size, vp9_depayload, vp9_frame_size
from .format import TrackHeader
from .opushead import opus_template

__all__ = [
    "CONTAINERS",
    "MP4_CODECS",
    "SUPPORTED_CODECS",
    "WEBM_CODECS",
    "Frame",
    "FrameAssembler",
    "ReorderBuffer",
    "RtpParser",
    "RtpUnit",
    "Unwrapper",
    "add_stream",
    "check_codecs",
    "container_format",
    "mux_frame",
    "sender_report_time",
    "track_clock",
]

_NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 to 1970
_FIXED_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC
#: Output suffix -> FFmpeg muxer. MP4 is left out: Opus in MP4 needs an
#: OpusHead up front, which PyAV's muxing-only streams cannot be given.
CONTAINERS = {".webm": "webm", ".mkv": "matroska", ".mp4": "mp4"}
#: MP4 as written here: H.264 and Opus (VP8 in MP4 is not a standard mapping)
MP4_CODECS = frozenset({"h264", "opus"})
WEBM_CODECS = frozenset({"vp8", "vp9", "opus"})
SUPPORTED_CODECS = frozenset({"vp8", "vp9", "h264", "opus"})


@dataclass
class RtpUnit:
    """One recorded RTP packet, its counters extended so they never wrap."""

    seq: int
    timestamp: int
    marker: bool
    payload: bytes
    arrival_ns: int


@dataclass
class Frame:
    """One depayloaded frame (or audio packet), ready to mux."""

    rtp_time: int  # extended
    data: bytes
    keyframe: bool


class Unwrapper:
    """Extends 16/32-bit RTP counters to integers that never wrap."""

    def __init__(self, bits: int) -> None:
        self.modulo = 1 << bits
        self.last: int | None = None

    def __call__(self, value: int) -> int:
        if self.last is None:
            self.last = value
            return value
        half = self.modulo // 2
        delta = (value - self.last) % self.modulo
        if delta >= half:
            delta -= self.modulo
        extended = self.last + delta
        self.last = max(self.last, extended)
        return extended


class RtpParser:
    """Parses one track's recorded RTP packets, extending their counters.

    Only the first SSRC is kept: a new one means the publisher restarted its
    encoder, and a new publication gets its own recording anyway.
    """

    def __init__(self) -> None:
        self._seqs, self._stamps = Unwrapper(16), Unwrapper(32)
        self._ssrc: int | None = None

    def parse(self, data: bytes, arrival_ns: int) -> RtpUnit | None:
        """The packet, or ``None`` if malformed or from another source."""
        # the fixed header only (not aiortc's RtpPacket.parse, which also
        # decodes every header extension): this runs for every packet of a
        # live recording
        if len(data) < 12 or data[0] >> 6 != 2:
            return None
        start = payload_offset(data)
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
        if start > end:
            return None
        sequence_number, timestamp, ssrc = _FIXED_HEADER.unpack_from(data, 2)
        if self._ssrc is None:
            self._ssrc = ssrc
        elif ssrc != self._ssrc:
            return None
        return RtpUnit(
            self._seqs(sequence_number),
            self._stamps(timestamp),
            bool(data[1] & 0x80),
            data[start:end],
            arrival_ns,
        )


def sender_report_time(ntp: int, rtp: int, near: int) -> tuple[float, int]:
    """A sender report as (Unix seconds, RTP timestamp extended next to
    ``near``, an extended timestamp of the same track)."""
    delta = (rtp - near) % (1 << 32)
    if delta >= 1 << 31:
        delta -= 1 << 32
    seconds = (ntp >> 32) + (ntp & 0xFFFFFFFF) / (1 << 32) - _NTP_UNIX_OFFSET
    return seconds, near + delta


def track_clock(
    clock_rate: int, reference: tuple[float, int]
) -> Callable[[int], float]:
    """Seconds of an extended RTP timestamp, from a (seconds, timestamp) pair:
    a sender report, or the first packet's arrival."""
    seconds, rtp = reference
    return lambda timestamp: seconds + (timestamp - rtp) / clock_rate


def check_codecs(headers: list[TrackHeader], format_name: str) -> None:
    """Raise ``ValueError`` if the container cannot hold one of the tracks."""
    for header in headers:
        codec = header.codec_name
        if codec not in SUPPORTED_CODECS:
            raise ValueError(f"{header.track_id}: cannot convert {header.mime_type}")
        if format_name == "webm" and codec not in WEBM_CODECS:
            raise ValueError(f"WebM cannot hold {header.mime_type}: use .mkv")
        if format_name == "mp4" and codec not in MP4_CODECS:
            raise ValueError(
                f"MP4 here holds H.264 and Opus, not {header.mime_type}: "
                "use .webm or .mkv"
            )


def container_format(suffix: str) -> str:
    """The FFmpeg muxer for an output suffix; ``ValueError`` if unknown."""
    name = CONTAINERS.get(suffix.lower())
    if name is None:
        raise ValueError(f"unknown output format {suffix!r}: use .webm, .mkv or .mp4")
    return name


def _frame_start(codec: str) -> Callable[[bytes], bool]:
    if codec == "vp8":
        return lambda p: bool(p) and bool(p[0] & 0x10) and p[0] & 0x07 == 0
    if codec == "vp9":
        return lambda p: bool(p) and bool(p[0] & 0x08)
    # H.264: anything but the middle or end of a fragmented NAL unit
    return lambda p: bool(p) and (p[0] & 0x1F != 28 or bool(len(p) > 1 and p[1] & 0x80))


def _depayloader(header: TrackHeader) -> Callable[[bytes], bytes]:
    if header.codec_name == "vp9":
        return lambda payload: vp9_depayload(payload)[0]
    codec = RTCRtpCodecParameters(
        mimeType=header.mime_type,
        clockRate=header.clock_rate,
        payloadType=header.payload_type,
    )
    return lambda payload: depayload(codec, payload)


def _picture_size(codec: str, keyframe: bytes) -> tuple[int, int] | None:
    if codec == "vp8":
        return vp8_frame_size(keyframe)
    if codec == "vp9":
        return vp9_frame_size(keyframe)
    return h264_sps_size(keyframe)


class FrameAssembler:
    """Turns one track's packets, in sequence order, into frames.

    Video: the packets of one RTP timestamp form a frame; it is kept only if
    none of its packets is missing (from the first to the one with the
    marker), and after a missing packet (of it or of frames before it) only
    from the next keyframe on.
    Audio: every packet is a frame. :meth:`push` returns the frames a packet
    completes (a video frame completes when the next one starts), and
    :meth:`flush` the last one.
    """

    def __init__(self, header: TrackHeader) -> None:
        self.codec = header.codec_name
        self.video = header.kind == "video"
        self.frames_dropped = 0
        #: The picture size, from the first keyframe (video).
        self.size: tuple[int, int] | None = None
        if self.video:
            self._starts_frame = _frame_start(self.codec)
            self._is_keyframe = KEYFRAME_DETECTORS[self.codec]
            self._unpack = _depayloader(header)
        self._group: list[RtpUnit] = []
        self._need_keyframe = True
        self._previous_last: int | None = None

    def push(self, packet: RtpUnit) -> list[Frame]:
        """Add the next packet (sequence numbers may skip: lost packets)."""
        if not self.video:
            if not packet.payload:
                return []
            return [Frame(packet.timestamp, packet.payload, True)]
        group = self._group
        if group and packet.timestamp != group[0].timestamp:
            self._group = [packet]
            frame = self._finish(group)
            return [frame] if frame is not None else []
        group.append(packet)
        return []

    def flush(self) -> list[Frame]:
        """The frame still being assembled, if complete."""
        group, self._group = self._group, []
        frame = self._finish(group) if group else None
        return [frame] if frame is not None else []

    def _finish(self, group: list[RtpUnit]) -> Frame | None:
        if self._previous_last is not None and group[0].seq != self._previous_last + 1:
            # whole frames lost before this one: only a keyframe goes on
            self._need_keyframe = True
        self._previous_last = group[-1].seq
        complete = (
            self._starts_frame(group[0].payload)
            and group[-1].marker
            and all(b.seq == a.seq + 1 for a, b in itertools.pairwise(group))
        )
        if not complete:
            self._need_keyframe = True
            self.frames_dropped += 1
            return None
        keyframe = self._is_keyframe(group[0].payload)
        if self._need_keyframe and not keyframe:
            self.frames_dropped += 1
            return None
        try:
            data = b"".join(self._unpack(p.payload) for p in group)
        except (ValueError, IndexError):
            self._need_keyframe = True
            self.frames_dropped += 1
            return None
        self._need_keyframe = False
        if keyframe and self.size is None:
            self.size = _picture_size(self.codec, data)
        return Frame(group[0].timestamp, data, keyframe)


class ReorderBuffer:
    """Puts live packets back in sequence order, within a bounded wait.

    Packets are released in order as soon as the next one is there. A gap is
    waited for (a retransmission may fill it) until the packet after it has
    waited ``window_ns`` (by arrival times) or ``max_packets`` are held; then
    the gap is given up on and its frame is dropped downstream. Duplicates
    and packets arriving after their place was given up are discarded.
    """

    def __init__(self, window_ns: int, max_packets: int) -> None:
        self.window_ns = window_ns
        self.max_packets = max_packets
        self._held: dict[int, RtpUnit] = {}
        self._next: int | None = None
        #: Packets released, and sequence numbers given up on.
        self.released = 0
        self.missing = 0

    def push(self, packet: RtpUnit) -> list[RtpUnit]:
        """Add a packet; returns the packets now in order."""
        if self._next is None:
            self._next = packet.seq
        if packet.seq < self._next or packet.seq in self._held:
            return []  # a duplicate, or too late
        self._held[packet.seq] = packet
        return self._release(packet.arrival_ns)

    def flush(self) -> list[RtpUnit]:
        """Everything held, in order (gaps given up on)."""
        return self._release(None)

    def _release(self, now_ns: int | None) -> list[RtpUnit]:
        held = self._held
        out: list[RtpUnit] = []
        while held:
            assert self._next is not None
            packet = held.pop(self._next, None)
            if packet is None:
                first = min(held)
                waited = now_ns is None or (
                    now_ns - held[first].arrival_ns >= self.window_ns
                    or len(held) > self.max_packets
                )
                if not waited:
                    break
                self.missing += first - self._next
                packet = held.pop(first)
            out.append(packet)
            self._next = packet.seq + 1
        self.released += len(out)
        return out


def add_stream(
    container: Any, header: TrackHeader, size: tuple[int, int] | None
) -> Any:
    """A muxing-only stream (no codec context) for a track."""
    if header.kind == "video":
        width, height = size or (0, 0)
        if not width:
            raise ValueError(f"{header.track_id}: no keyframe with a picture size")
        stream = container.add_mux_stream(header.codec_name, width=width, height=height)
    elif container.format.name == "mp4":  # needs the OpusHead: see opushead
        stream = container.add_stream_from_template(
            opus_template(header.channels or 2, header.clock_rate)
        )
    else:
        stream = container.add_mux_stream("opus", rate=header.clock_rate)
    stream.time_base = fractions.Fraction(1, header.clock_rate)
    return stream


def mux_frame(
    container: Any, stream: Any, frame: Frame, pts: int, clock_rate: int
) -> None:
    """Write one frame at ``pts`` (in the track's clock rate)."""
    packet = av.Packet(frame.data)
    packet.stream = stream
    packet.pts = packet.dts = pts
    # in the track's own clock: the muxer may change the stream's time base
    # when it writes the header, and rescales from this
    packet.time_base = fractions.Fraction(1, clock_rate)
    packet.is_keyframe = frame.keyframe
    container.mux(packet)
