"""Recordings to playable files, without decoding.

Packets are put back in order (duplicates from retransmissions removed),
assembled into frames, depayloaded and muxed with PyAV into WebM (VP8/VP9 and
Opus) or Matroska (H.264 too). A frame with a missing packet is dropped
together with everything after it up to the next keyframe, so loss makes the
file skip, never decode garbage. Tracks are lined up on the publisher's RTCP
sender reports (the same clock for a publisher's audio and video), or on
arrival times when a track has none.
"""

from __future__ import annotations

import fractions
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from ..rtp.keyframes import KEYFRAME_DETECTORS
from .bitstream import h264_sps_size, vp8_frame_size, vp9_depayload, vp9_frame_size
from .format import RECORD_RTP, RECORD_SENDER_REPORT, TrackHeader, read_recording

__all__ = [
    "ConversionResult",
    "ConvertedTrack",
    "convert",
    "group_by_participant",
    "suffix_for",
]

logger = logging.getLogger(__name__)

_NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 to 1970
# MP4 is left out: Opus in MP4 needs an OpusHead up front, which PyAV's
# muxing-only streams cannot be given (the file does not open).
_CONTAINERS = {".webm": "webm", ".mkv": "matroska"}
_WEBM_CODECS = {"vp8", "vp9", "opus"}
_SUPPORTED = {"vp8", "vp9", "h264", "opus"}


@dataclass(frozen=True)
class ConvertedTrack:
    """What became of one recorded track."""

    track_id: str
    kind: str
    codec: str
    #: RTP packets in the recording, after duplicates were removed.
    packets: int
    #: Sequence numbers that never arrived (lost even after retransmission).
    packets_missing: int
    frames_written: int
    #: Frames left out: incomplete, or waiting for a keyframe after a gap.
    frames_dropped: int
    #: Seconds from the start of the output to this track's first frame.
    starts_at: float


@dataclass(frozen=True)
class ConversionResult:
    """The converted file and what happened to each track."""

    output: Path
    tracks: tuple[ConvertedTrack, ...]
    #: How the tracks were lined up: ``"sender_reports"`` or ``"arrival"``.
    aligned_by: str


@dataclass
class _Packet:
    seq: int  # extended (never wraps)
    timestamp: int  # extended
    marker: bool
    payload: bytes
    arrival_ns: int


@dataclass
class _Frame:
    time: float  # seconds on the track's clock mapping (absolute)
    rtp_time: int
    data: bytes
    keyframe: bool


class _Unwrapper:
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


@dataclass
class _Track:
    header: TrackHeader
    packets: list[_Packet]
    #: (NTP seconds as Unix time, extended RTP timestamp) of the first report
    sender_report: tuple[float, int] | None
    missing: int


def _load(path: Path) -> _Track:
    with open(path, "rb") as file:
        header, records = read_recording(file)
        by_seq: dict[int, _Packet] = {}
        reports: list[tuple[int, int]] = []
        seqs, stamps = _Unwrapper(16), _Unwrapper(32)
        ssrc: int | None = None
        for record in records:
            if record.type == RECORD_SENDER_REPORT:
                reports.append(record.sender_report())
                continue
            if record.type != RECORD_RTP:
                continue
            try:
                packet = RtpPacket.parse(record.body)
            except ValueError:
                continue
            if ssrc is None:
                ssrc = packet.ssrc
            elif packet.ssrc != ssrc:
                # a new source (the publisher restarted its encoder): keep the
                # first; a new publication gets its own file anyway
                continue
            seq = seqs(packet.sequence_number)
            if seq not in by_seq:
                by_seq[seq] = _Packet(
                    seq,
                    stamps(packet.timestamp),
                    bool(packet.marker),
                    packet.payload,
                    record.arrival_ns,
                )
    packets = [by_seq[s] for s in sorted(by_seq)]
    missing = packets[-1].seq - packets[0].seq + 1 - len(packets) if packets else 0
    first_report = None
    if reports and packets:
        ntp, rtp = reports[0]
        # the report's timestamp, extended next to the packets' timestamps
        base = packets[0].timestamp
        delta = (rtp - base) % (1 << 32)
        if delta >= 1 << 31:
            delta -= 1 << 32
        seconds = (ntp >> 32) + (ntp & 0xFFFFFFFF) / (1 << 32) - _NTP_UNIX_OFFSET
        first_report = (seconds, base + delta)
    return _Track(header, packets, first_report, missing)


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


def _video_frames(
    track: _Track, clock: Callable[[int], float]
) -> tuple[list[_Frame], int, tuple[int, int] | None]:
    """Complete frames from the first keyframe on; and the number dropped."""
    codec = track.header.codec_name
    starts_frame = _frame_start(codec)
    is_keyframe = KEYFRAME_DETECTORS[codec]
    unpack = _depayloader(track.header)
    frames: list[_Frame] = []
    dropped = 0
    size: tuple[int, int] | None = None
    need_keyframe = True
    previous_last: int | None = None
    packets = track.packets
    i = 0
    while i < len(packets):
        j = i + 1
        while j < len(packets) and packets[j].timestamp == packets[i].timestamp:
            j += 1
        group = packets[i:j]
        i = j
        complete = (
            starts_frame(group[0].payload)
            and group[-1].marker
            and all(b.seq == a.seq + 1 for a, b in itertools.pairwise(group))
            and (previous_last is None or group[0].seq == previous_last + 1)
        )
        previous_last = group[-1].seq
        if not complete:
            need_keyframe = True
            dropped += 1
            continue
        keyframe = is_keyframe(group[0].payload)
        if need_keyframe and not keyframe:
            dropped += 1
            continue
        try:
            data = b"".join(unpack(p.payload) for p in group)
        except (ValueError, IndexError):
            need_keyframe = True
            dropped += 1
            continue
        need_keyframe = False
        if keyframe and size is None:
            size = (
                vp8_frame_size(data)
                if codec == "vp8"
                else vp9_frame_size(data)
                if codec == "vp9"
                else h264_sps_size(data)
            )
        frames.append(
            _Frame(clock(group[0].timestamp), group[0].timestamp, data, keyframe)
        )
    return frames, dropped, size


def _audio_frames(track: _Track, clock: Callable[[int], float]) -> list[_Frame]:
    return [
        _Frame(clock(p.timestamp), p.timestamp, p.payload, True)
        for p in track.packets
        if p.payload
    ]


def convert(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    trim_to_video: bool = True,
) -> ConversionResult:
    """Mux recorded tracks (e.g. one participant's audio and video) into a file.

    The container follows ``output``'s suffix: ``.webm`` (VP8, VP9, Opus)
    or ``.mkv`` (H.264 too). With ``trim_to_video``, audio from before the
    first picture is left out, so both start together. Raises ``ValueError`` for a
    codec or container that cannot hold the tracks, and
    :class:`~pysfu.recording.format.BadRecording` for a damaged file.
    """
    output = Path(output)
    container_format = _CONTAINERS.get(output.suffix.lower())
    if container_format is None:
        raise ValueError(f"unknown output format {output.suffix!r}: use .webm or .mkv")
    tracks = [_load(Path(p)) for p in inputs]
    tracks = [t for t in tracks if t.packets]
    if not tracks:
        raise ValueError("the recordings hold no media")
    for t in tracks:
        codec = t.header.codec_name
        if codec not in _SUPPORTED:
            raise ValueError(
                f"{t.header.track_id}: cannot convert {t.header.mime_type}"
            )
        if container_format == "webm" and codec not in _WEBM_CODECS:
            raise ValueError(f"WebM cannot hold {t.header.mime_type}: use .mkv")

    by_reports = all(t.sender_report is not None for t in tracks)

    def clock_of(t: _Track) -> Callable[[int], float]:
        rate = t.header.clock_rate
        if by_reports:
            assert t.sender_report is not None
            seconds, rtp = t.sender_report
        else:
            seconds, rtp = t.packets[0].arrival_ns / 1e9, t.packets[0].timestamp
        return lambda timestamp: seconds + (timestamp - rtp) / rate

    prepared: list[tuple[_Track, list[_Frame], int, tuple[int, int] | None]] = []
    for t in tracks:
        clock = clock_of(t)
        if t.header.kind == "video":
            frames, dropped, size = _video_frames(t, clock)
            prepared.append((t, frames, dropped, size))
        else:
            prepared.append((t, _audio_frames(t, clock), 0, None))

    starts = [frames[0].time for _, frames, _, _ in prepared if frames]
    video_starts = [
        frames[0].time
        for t, frames, _, _ in prepared
        if frames and t.header.kind == "video"
    ]
    if not starts:
        raise ValueError("no complete frame in the recordings")
    origin = min(starts)
    if trim_to_video and video_starts:
        origin = min(video_starts)
        prepared = [
            (t, [f for f in frames if f.time >= origin - 1e-3], d, s)
            for t, frames, d, s in prepared
        ]

    results: list[ConvertedTrack] = []
    with av.open(str(output), "w", format=container_format) as container:
        streams = []
        for t, _frames, _, size in prepared:
            if t.header.kind == "video":
                width, height = size or (0, 0)
                if not width:
                    raise ValueError(
                        f"{t.header.track_id}: no keyframe with a picture size"
                    )
                stream = container.add_mux_stream(
                    t.header.codec_name, width=width, height=height
                )
            else:
                stream = container.add_mux_stream("opus", rate=t.header.clock_rate)
            stream.time_base = fractions.Fraction(1, t.header.clock_rate)
            streams.append(stream)
        timeline: list[tuple[float, int, _Frame]] = []
        for index, (_t, frames, _, _) in enumerate(prepared):
            for frame in frames:
                timeline.append((frame.time, index, frame))
        timeline.sort(key=lambda item: (item[0], item[1]))
        written = [0] * len(prepared)
        last_pts = [-1] * len(prepared)
        for moment, index, frame in timeline:
            rate = prepared[index][0].header.clock_rate
            pts = round((moment - origin) * rate)
            if pts <= last_pts[index]:
                continue  # a repeated or backwards timestamp
            last_pts[index] = pts
            packet = av.Packet(frame.data)
            packet.stream = streams[index]
            packet.pts = packet.dts = pts
            # in the track's own clock: the muxer may change the stream's
            # time base when it writes the header, and rescales from this
            packet.time_base = fractions.Fraction(1, rate)
            packet.is_keyframe = frame.keyframe
            container.mux(packet)
            written[index] += 1
    for index, (t, frames, dropped, _) in enumerate(prepared):
        results.append(
            ConvertedTrack(
                track_id=t.header.track_id,
                kind=t.header.kind,
                codec=t.header.mime_type,
                packets=len(t.packets),
                packets_missing=t.missing,
                frames_written=written[index],
                frames_dropped=dropped,
                starts_at=(frames[0].time - origin) if frames else 0.0,
            )
        )
    return ConversionResult(
        output, tuple(results), "sender_reports" if by_reports else "arrival"
    )


def suffix_for(paths: Iterable[Path]) -> str:
    """``".webm"`` when WebM can hold every recording, else ``".mkv"``."""
    for path in paths:
        with open(path, "rb") as file:
            header, _ = read_recording(file)
        if header.codec_name not in _WEBM_CODECS:
            return ".mkv"
    return ".webm"


def group_by_participant(paths: Iterable[Path]) -> dict[str, list[Path]]:
    """Recording files of a room, grouped by the participant who published them."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(paths):
        with open(path, "rb") as file:
            header, _ = read_recording(file)
        groups.setdefault(header.participant_id, []).append(path)
    return groups
