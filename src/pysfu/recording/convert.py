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

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from .assemble import (
    WEBM_CODECS,
    Frame,
    FrameAssembler,
    RtpParser,
    RtpUnit,
    add_stream,
    check_codecs,
    container_format,
    mux_frame,
    sender_report_time,
    track_clock,
)
from .format import RECORD_RTP, RECORD_SENDER_REPORT, TrackHeader, read_recording

__all__ = [
    "ConversionResult",
    "ConvertedTrack",
    "convert",
    "group_by_participant",
    "suffix_for",
]

logger = logging.getLogger(__name__)


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
class _Track:
    header: TrackHeader
    packets: list[RtpUnit]
    #: (NTP seconds as Unix time, extended RTP timestamp) of the first report
    sender_report: tuple[float, int] | None
    missing: int


def _load(path: Path) -> _Track:
    with open(path, "rb") as file:
        header, records = read_recording(file)
        by_seq: dict[int, RtpUnit] = {}
        reports: list[tuple[int, int]] = []
        parser = RtpParser()
        for record in records:
            if record.type == RECORD_SENDER_REPORT:
                reports.append(record.sender_report())
            elif record.type == RECORD_RTP:
                packet = parser.parse(record.body, record.arrival_ns)
                if packet is not None and packet.seq not in by_seq:
                    by_seq[packet.seq] = packet
    packets = [by_seq[s] for s in sorted(by_seq)]
    missing = packets[-1].seq - packets[0].seq + 1 - len(packets) if packets else 0
    first_report = None
    if reports and packets:
        first_report = sender_report_time(*reports[0], near=packets[0].timestamp)
    return _Track(header, packets, first_report, missing)


def _frames(
    track: _Track,
) -> tuple[list[Frame], int, tuple[int, int] | None]:
    """Complete frames from the first keyframe on; the number dropped; the
    picture size (video)."""
    assembler = FrameAssembler(track.header)
    frames = [f for p in track.packets for f in assembler.push(p)]
    frames += assembler.flush()
    return frames, assembler.frames_dropped, assembler.size


def convert(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    trim_to_video: bool = True,
) -> ConversionResult:
    """Mux recorded tracks (e.g. one participant's audio and video) into a file.

    The container follows ``output``'s suffix: ``.webm`` (VP8, VP9, Opus),
    ``.mkv`` (H.264 too) or ``.mp4`` (H.264 and Opus only: VP8 in MP4 is
    not a standard mapping). With ``trim_to_video``, audio from before the
    first picture is left out, so both start together. Raises ``ValueError`` for a
    codec or container that cannot hold the tracks, and
    :class:`~pysfu.recording.format.BadRecording` for a damaged file.
    """
    output = Path(output)
    format_name = container_format(output.suffix)
    tracks = [_load(Path(p)) for p in inputs]
    tracks = [t for t in tracks if t.packets]
    if not tracks:
        raise ValueError("the recordings hold no media")
    check_codecs([t.header for t in tracks], format_name)

    by_reports = all(t.sender_report is not None for t in tracks)

    def clock_of(t: _Track) -> Callable[[int], float]:
        if t.sender_report is not None and by_reports:
            return track_clock(t.header.clock_rate, t.sender_report)
        first = t.packets[0]
        return track_clock(
            t.header.clock_rate, (first.arrival_ns / 1e9, first.timestamp)
        )

    # (track, [(seconds, frame)], frames dropped, picture size)
    prepared: list[
        tuple[_Track, list[tuple[float, Frame]], int, tuple[int, int] | None]
    ] = []
    for t in tracks:
        clock = clock_of(t)
        assembled, dropped, size = _frames(t)
        timed = [(clock(f.rtp_time), f) for f in assembled]
        prepared.append((t, timed, dropped, size))

    starts = [frames[0][0] for _, frames, _, _ in prepared if frames]
    video_starts = [
        frames[0][0]
        for t, frames, _, _ in prepared
        if frames and t.header.kind == "video"
    ]
    if not starts:
        raise ValueError("no complete frame in the recordings")
    origin = min(starts)
    if trim_to_video and video_starts:
        origin = min(video_starts)
        prepared = [
            (t, [f for f in frames if f[0] >= origin - 1e-3], d, s)
            for t, frames, d, s in prepared
        ]

    results: list[ConvertedTrack] = []
    with av.open(str(output), "w", format=format_name) as container:
        streams = [add_stream(container, t.header, size) for t, _, _, size in prepared]
        timeline: list[tuple[float, int, Frame]] = []
        for index, (_t, frames, _, _) in enumerate(prepared):
            for moment, frame in frames:
                timeline.append((moment, index, frame))
        timeline.sort(key=lambda item: (item[0], item[1]))
        written = [0] * len(prepared)
        last_pts = [-1] * len(prepared)
        for moment, index, frame in timeline:
            rate = prepared[index][0].header.clock_rate
            pts = round((moment - origin) * rate)
            if pts <= last_pts[index]:
                continue  # a repeated or backwards timestamp
            last_pts[index] = pts
            mux_frame(container, streams[index], frame, pts, rate)
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
                starts_at=(frames[0][0] - origin) if frames else 0.0,
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
        if header.codec_name not in WEBM_CODECS:
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
