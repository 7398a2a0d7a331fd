"""Muxing recorded tracks into WebM or Matroska as their packets arrive.

A :class:`LiveMuxer` is fed on the recording writer thread, with exactly the
bytes a raw recording would hold (see :mod:`pysfu.recording.format`), so the
event loop does no more work than for a raw recording. Each track's packets
go through a bounded :class:`~pysfu.recording.assemble.ReorderBuffer`
(retransmissions fill gaps within the window) into the same frame assembly
as the offline :func:`~pysfu.recording.convert`, and complete frames are
muxed with PyAV's muxing-only streams: no decoding or encoding.

The container needs every stream before its first packet, and a video
stream needs the picture size of a keyframe; and the tracks line up on the
publisher's sender reports. So frames are held at the start until every
video track has a keyframe and every track a sender report, or for at most
``start_timeout`` seconds (then tracks are lined up on arrival times, and a
video track without a keyframe yet is left out). The default wait is long
because libwebrtc (Chromium) sends an audio track's reports only every
five seconds or so; the first one came 3.5 s into a recording here.

The file is closed, and playable, when its last track ends; until then a
WebM/Matroska file is readable up to its last written cluster.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from .assemble import (
    Frame,
    FrameAssembler,
    ReorderBuffer,
    RtpParser,
    add_stream,
    check_codecs,
    container_format,
    mux_frame,
    sender_report_time,
    track_clock,
)
from .convert import ConvertedTrack
from .format import (
    MAGIC,
    RECORD_RTP,
    RECORD_SENDER_REPORT,
    Record,
    TrackHeader,
    decode_record,
)

__all__ = ["LiveMuxer", "LiveTrackSink"]

logger = logging.getLogger(__name__)

#: Each cluster written to disk when it closes (FFmpeg otherwise holds the
#: file's bytes in its I/O buffer), and clusters at most a second long (not
#: only from keyframe to keyframe): a file cut short because the process
#: died is readable up to its last second or so.
_MUXER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}


@dataclass
class _LiveTrack:
    header: TrackHeader
    reorder: ReorderBuffer
    assembler: FrameAssembler
    parser: RtpParser = field(default_factory=RtpParser)
    #: (Unix seconds, extended RTP timestamp) of the first sender report
    sender_report: tuple[float, int] | None = None
    pending_reports: list[tuple[int, int]] = field(default_factory=list)
    first_packet: tuple[float, int] | None = None  # (arrival s, timestamp)
    held: list[Frame] = field(default_factory=list)  # before the header
    stream: Any = None
    clock: Any = None
    last_pts: int = -1
    written: int = 0
    starts_at: float | None = None
    ended: bool = False
    left_out: bool = False


class LiveMuxer:
    """One WebM/Matroska file, muxed from one or more tracks as they arrive.

    Add tracks with :meth:`add_track` (from any thread) while
    :attr:`accepting`; feed each through its :class:`LiveTrackSink` on the
    writer thread. The file is finished when every track has ended, or on
    :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        reorder_window: float = 0.3,
        max_reorder_packets: int = 1000,
        start_timeout: float = 8.0,
        trim_to_video: bool = True,
    ) -> None:
        self.path = Path(path)
        self.format_name = container_format(self.path.suffix)
        if self.format_name == "mp4":  # its index is written at the end
            raise ValueError(
                "a live file is WebM or Matroska: an MP4 is "
                "unreadable until closed; convert to .mp4 afterwards"
            )
        self.reorder_window = reorder_window
        self.max_reorder_packets = max_reorder_packets
        self.start_timeout = start_timeout
        self.trim_to_video = trim_to_video
        #: How the tracks were lined up (set when the file starts).
        self.aligned_by: str | None = None
        #: Set if muxing failed; the file stops growing.
        self.error: str | None = None
        self.closed = False
        self._tracks: list[_LiveTrack] = []
        self._lock = threading.Lock()  # add_track against the header
        self._container: Any = None
        self._origin = 0.0
        self._first_arrival_ns: int | None = None

    @property
    def accepting(self) -> bool:
        """Whether tracks may still be added (the header is not written)."""
        return self._container is None and not self.closed

    def add_track(self, header: TrackHeader) -> LiveTrackSink | None:
        """Add a track; ``None`` once the file has started (use a new one).

        Raises ``ValueError`` if the container cannot hold the codec.
        """
        check_codecs([header], self.format_name)
        with self._lock:
            if not self.accepting:
                return None
            window_ns = int(self.reorder_window * 1e9)
            track = _LiveTrack(
                header,
                ReorderBuffer(window_ns, self.max_reorder_packets),
                FrameAssembler(header),
            )
            self._tracks.append(track)
            return LiveTrackSink(self, track)

    def results(self) -> list[ConvertedTrack]:
        """What became of each track so far (as :func:`convert` reports)."""
        out = []
        for t in self._tracks:
            out.append(
                ConvertedTrack(
                    track_id=t.header.track_id,
                    kind=t.header.kind,
                    codec=t.header.mime_type,
                    packets=t.reorder.released,
                    packets_missing=t.reorder.missing,
                    frames_written=t.written,
                    frames_dropped=t.assembler.frames_dropped,
                    starts_at=t.starts_at or 0.0,
                )
            )
        return out

    # -- the writer thread ---------------------------------------------------

    def feed(self, track: _LiveTrack, record: Record) -> None:
        """One record of ``track`` (writer thread; never raises)."""
        if self.closed or self.error is not None:
            return
        try:
            if self._first_arrival_ns is None:
                self._first_arrival_ns = record.arrival_ns
            if record.type == RECORD_SENDER_REPORT:
                track.pending_reports.append(record.sender_report())
                self._note_report(track)
            elif record.type == RECORD_RTP:
                packet = track.parser.parse(record.body, record.arrival_ns)
                if packet is None:
                    return
                if track.first_packet is None:
                    track.first_packet = (packet.arrival_ns / 1e9, packet.timestamp)
                    self._note_report(track)
                for ordered in track.reorder.push(packet):
                    self._frames(track, track.assembler.push(ordered))
            if self._container is None:
                self._maybe_start(record.arrival_ns)
        except Exception as exc:
            self._fail(exc)

    def _note_report(self, track: _LiveTrack) -> None:
        if track.sender_report is None and track.first_packet and track.pending_reports:
            track.sender_report = sender_report_time(
                *track.pending_reports[0], near=track.first_packet[1]
            )
        if track.sender_report is not None:
            track.pending_reports.clear()

    def _frames(self, track: _LiveTrack, frames: list[Frame]) -> None:
        if not frames or track.left_out:
            return
        if self._container is None:
            track.held.extend(frames)
            return
        for frame in frames:
            self._mux(track, frame)

    def _mux(self, track: _LiveTrack, frame: Frame) -> None:
        moment = track.clock(frame.rtp_time)
        if moment < self._origin - 1e-3:
            return  # before the first picture
        rate = track.header.clock_rate
        pts = round((moment - self._origin) * rate)
        if pts <= track.last_pts:
            return  # a repeated or backwards timestamp
        track.last_pts = pts
        if track.starts_at is None:
            track.starts_at = moment - self._origin
        mux_frame(self._container, track.stream, frame, pts, rate)
        track.written += 1

    def _maybe_start(self, now_ns: int | None) -> None:
        """Write the header once every track is ready, or the wait is over."""
        with self._lock:
            tracks = self._tracks
            ready = all(
                t.sender_report is not None
                and (t.header.kind != "video" or self._has_picture(t))
                for t in tracks
            )
            timed_out = now_ns is None or (
                self._first_arrival_ns is not None
                and now_ns - self._first_arrival_ns >= self.start_timeout * 1e9
            )
            if not (ready or timed_out):
                return
            for t in tracks:
                if t.header.kind == "video" and not (
                    t.left_out or self._has_picture(t)
                ):
                    # no keyframe in time: left out of this file, and its
                    # frames are not held any longer
                    t.left_out, t.held = True, []
                    logger.warning(
                        "live recording %s: %s left out (no keyframe yet)",
                        self.path,
                        t.header.track_id,
                    )
            included = [t for t in tracks if t.held and not t.left_out]
            if not included:
                return  # nothing to write (yet)
            self._start(included)

    @staticmethod
    def _has_picture(track: _LiveTrack) -> bool:
        return track.assembler.size is not None

    def _start(self, included: list[_LiveTrack]) -> None:
        by_reports = all(t.sender_report is not None for t in included)
        self.aligned_by = "sender_reports" if by_reports else "arrival"
        for t in included:
            reference = t.sender_report if by_reports else t.first_packet
            assert reference is not None
            t.clock = track_clock(t.header.clock_rate, reference)
        starts = [t.clock(t.held[0].rtp_time) for t in included]
        video = [
            t.clock(t.held[0].rtp_time) for t in included if t.header.kind == "video"
        ]
        self._origin = min(video) if self.trim_to_video and video else min(starts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format=self.format_name,
            options=_MUXER_OPTIONS,
        )
        try:
            for t in included:
                t.stream = add_stream(container, t.header, t.assembler.size)
        except Exception:
            container.close()
            raise
        # the streams exist; late tracks go to another file, and a track
        # with nothing yet is not in this one
        self._container = container
        for t in self._tracks:
            t.left_out = t not in included
        held = [
            (t.clock(f.rtp_time), i, f) for i, t in enumerate(included) for f in t.held
        ]
        held.sort(key=lambda item: (item[0], item[1]))
        for t in included:
            t.held = []
        for _, i, frame in held:
            self._mux(included[i], frame)

    def end_track(self, track: _LiveTrack) -> None:
        """``track`` ended; the file is finished with the last one."""
        self._flush(track)
        if all(t.ended for t in self._tracks):
            self.close()

    def _flush(self, track: _LiveTrack) -> None:
        if track.ended:
            return
        track.ended = True
        if self.closed or self.error is not None:
            return
        try:
            for packet in track.reorder.flush():
                self._frames(track, track.assembler.push(packet))
            self._frames(track, track.assembler.flush())
        except Exception as exc:
            self._fail(exc)

    def close(self) -> None:
        """Finish the file: every track ends. Call on the writer thread, or
        once it has stopped. Idempotent."""
        if self.closed:
            return
        for track in self._tracks:
            self._flush(track)
        if self._container is None and self.error is None:
            try:
                self._maybe_start(None)
            except Exception as exc:
                self._fail(exc)
        self.closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:
                self.error = self.error or str(exc)
            logger.info("live recording %s finished", self.path)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("live recording %s failed: %s", self.path, self.error)


class LiveTrackSink:
    """Where a :class:`~pysfu.recording.RecordingWriter` hands one track's
    recording bytes when muxing live (see :class:`LiveMuxer`)."""

    def __init__(self, muxer: LiveMuxer, track: _LiveTrack) -> None:
        self.muxer = muxer
        self._track = track

    def write(self, data: bytes) -> None:
        """One chunk as queued: the file header, or one record."""
        if data.startswith(MAGIC):
            return  # the header: the muxer has it already
        self.muxer.feed(self._track, decode_record(data))

    def close(self) -> None:
        """The track ended."""
        self.muxer.end_track(self._track)
