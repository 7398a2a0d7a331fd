"""Recording published tracks, and whole rooms, as they are forwarded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from ..events import (
    RoomClosedEvent,
    RoomEvent,
    TrackPublishedEvent,
    TrackUnpublishedEvent,
)
from ..forwarding import Forwarder
from .assemble import CONTAINERS, WEBM_CODECS
from .format import (
    RECORD_RTP,
    RECORD_SENDER_REPORT,
    TrackHeader,
    encode_file_header,
    encode_record,
    encode_sender_report,
)
from .live import LiveMuxer
from .writer import RecordingFile, RecordingWriter


class Publisher(Protocol):
    """What a recording reads of a room member."""

    @property
    def publications(self) -> Mapping[str, Forwarder]: ...


class RecordableRoom(Protocol):
    """What a recording needs of a room (a :class:`pysfu.Room`)."""

    @property
    def id(self) -> str: ...

    @property
    def members(self) -> Mapping[str, Publisher]: ...

    def add_listener(
        self, listener: Callable[[RoomEvent], None]
    ) -> Callable[[], None]: ...


__all__ = [
    "RECORDING_SUFFIX",
    "Publisher",
    "RecordableRoom",
    "RecordingStats",
    "RoomRecording",
    "TrackRecorder",
    "record_track",
]

logger = logging.getLogger(__name__)

#: File name suffix of recordings.
RECORDING_SUFFIX = ".pysfurec"


@dataclass(frozen=True)
class RecordingStats:
    """A snapshot of one track recording's counters."""

    path: Path
    track_id: str
    records_written: int
    records_dropped: int
    bytes_written: int
    error: str | None


class TrackRecorder:
    """Writes one published track to a file, as received (no decoding).

    It hangs off the track's :class:`~pysfu.forwarding.Forwarder` like a
    subscriber that never sends: every media packet (retransmissions
    unwrapped) and every sender report is appended to the file through the
    shared :class:`RecordingWriter`. A keyframe is requested at the start so
    the file is playable from its first seconds.

    With ``muxer``, the track is muxed live into the muxer's WebM/Matroska
    file on the writer thread instead (``path`` is then ignored): the same
    bytes are handed to a :class:`~pysfu.recording.live.LiveMuxer` rather
    than written.
    """

    def __init__(
        self,
        forwarder: Forwarder,
        path: Path,
        writer: RecordingWriter,
        *,
        room_id: str = "",
        muxer: LiveMuxer | None = None,
    ) -> None:
        codec = forwarder.primary_codec
        if codec is None:
            raise ValueError(f"{forwarder.track_id} has no negotiated codec yet")
        self.forwarder = forwarder
        self.track_id = forwarder.track_id
        self.header = TrackHeader(
            room_id=room_id,
            participant_id=forwarder.publisher_id,
            track_id=forwarder.track_id,
            kind=forwarder.kind,
            mime_type=codec.mime_type,
            clock_rate=codec.clock_rate,
            channels=codec.channels,
            payload_type=codec.payload_type,
            parameters=dict(codec.parameters),
            started_at=time.time(),
        )
        self._writer = writer
        self.muxer = muxer
        sink = None
        if muxer is not None:
            sink = muxer.add_track(self.header)
            if sink is None:
                raise ValueError(f"{muxer.path} has started: use a new LiveMuxer")
            path = muxer.path
        self._file: RecordingFile = writer.open(
            path, encode_file_header(self.header), sink
        )
        self.stopped = False
        forwarder.add_recorder(self)
        if forwarder.kind == "video":
            forwarder.request_keyframe()

    @property
    def path(self) -> Path:
        return self._file.path

    def record_rtp(self, data: bytes) -> None:
        """Append one RTP packet (called by the forwarder; never raises)."""
        self._writer.write(self._file, encode_record(RECORD_RTP, time.time_ns(), data))

    def record_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Append the publisher's sender report (called by the forwarder)."""
        self._writer.write(
            self._file,
            encode_record(
                RECORD_SENDER_REPORT,
                time.time_ns(),
                encode_sender_report(ntp_timestamp, rtp_timestamp),
            ),
        )

    def stop(self) -> None:
        """Stop recording; what was queued is still written. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.forwarder.remove_recorder(self)
        self._writer.close_file(self._file)

    def stats(self) -> RecordingStats:
        """This recording's counters."""
        f = self._file
        return RecordingStats(
            path=f.path,
            track_id=self.track_id,
            records_written=f.records_queued,
            records_dropped=f.records_dropped,
            bytes_written=f.bytes_written,
            error=f.error or (self.muxer.error if self.muxer else None),
        )


def record_track(
    forwarder: Forwarder, path: str | Path, writer: RecordingWriter | None = None
) -> TrackRecorder:
    """Record one published track to ``path`` (see :class:`TrackRecorder`).

    A ``.webm`` or ``.mkv`` path is muxed live (:class:`LiveMuxer`); any
    other is a raw recording, to :func:`convert` later.
    """
    path = Path(path)
    muxer = LiveMuxer(path) if path.suffix.lower() in CONTAINERS else None
    return TrackRecorder(forwarder, path, writer or RecordingWriter(), muxer=muxer)


def _safe(name: str) -> str:
    return quote(name, safe="-_.")


class RoomRecording:
    """Records every track of a room, including tracks published later.

    One file per published track, under ``directory/<room>/``, named after
    the time recording started, the participant and the track. A publisher
    that leaves and comes back starts a new file (its track is a new
    publication); convert the files together and they line up by their
    sender reports. Recording stops with :meth:`stop` or when the room
    closes.

    With ``live``, no raw files: each participant's tracks are muxed as they
    arrive into one WebM file (Matroska if a codec needs it),
    ``<time>-<participant>.webm``, playable once recording stops (see
    :class:`LiveMuxer`; ``live_options`` are its keyword arguments). A track
    published after that file has started goes to a new one.
    """

    def __init__(
        self,
        room: RecordableRoom,
        directory: str | Path,
        writer: RecordingWriter | None = None,
        *,
        live: bool = False,
        live_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.room = room
        self.directory = Path(directory) / _safe(room.id)
        self.started_at = time.time()
        self.recorders: dict[str, TrackRecorder] = {}
        self.finished: list[TrackRecorder] = []
        self.stopped = False
        self.live = live
        self._live_options = dict(live_options or {})
        #: The live files, by participant (the newest of each).
        self.muxers: dict[str, LiveMuxer] = {}
        self._live_files: list[LiveMuxer] = []
        self._live_owners: dict[Path, str] = {}  # file -> participant id
        self._live_counts: dict[str, int] = {}
        self._writer = writer or RecordingWriter()
        self._stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started_at))
        self._closing: asyncio.Task[list[Path]] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] = room.add_listener(self._on_event)
        for member in list(room.members.values()):
            for forwarder in list(member.publications.values()):
                self._start(forwarder)

    @property
    def files(self) -> list[Path]:
        """Every file of this recording, finished or not."""
        if self.live:  # those started: a participant may have sent nothing
            return [m.path for m in self._live_files if m.aligned_by is not None]
        return [r.path for r in [*self.finished, *self.recorders.values()]]

    @property
    def live_files(self) -> list[tuple[str, Path]]:
        """With ``live``: ``(participant id, file)`` of every live file
        started so far (a participant who sent nothing has none)."""
        return [
            (self._live_owners[m.path], m.path)
            for m in self._live_files
            if m.aligned_by is not None
        ]

    def stats(self) -> list[RecordingStats]:
        """The counters of every track recorded so far."""
        return [r.stats() for r in [*self.finished, *self.recorders.values()]]

    def _start(self, forwarder: Forwarder) -> None:
        if forwarder.track_id in self.recorders or forwarder.primary_codec is None:
            return
        count = sum(1 for r in self.finished if r.track_id == forwarder.track_id)
        name = f"{self._stamp}-{_safe(forwarder.track_id)}"
        if count:
            name += f"-{count + 1}"
        recorder = TrackRecorder(
            forwarder,
            self.directory / (name + RECORDING_SUFFIX),
            self._writer,
            room_id=self.room.id,
            muxer=self._muxer_for(forwarder) if self.live else None,
        )
        self.recorders[forwarder.track_id] = recorder
        logger.info(
            "room %s: recording %s to %s",
            self.room.id,
            recorder.track_id,
            recorder.path,
        )

    def _muxer_for(self, forwarder: Forwarder) -> LiveMuxer:
        """The participant's live file still taking tracks, or a new one."""
        participant = forwarder.publisher_id
        muxer = self.muxers.get(participant)
        if muxer is not None and muxer.accepting:
            return muxer
        member = self.room.members.get(participant)
        codecs = {
            f.primary_codec.mime_type.split("/")[-1].lower()
            for f in (member.publications.values() if member else [forwarder])
            if f.primary_codec is not None
        }
        suffix = ".webm" if codecs <= WEBM_CODECS else ".mkv"
        count = self._live_counts.get(participant, 0)
        self._live_counts[participant] = count + 1
        name = f"{self._stamp}-{_safe(participant)}"
        if count:
            name += f"-{count + 1}"
        muxer = LiveMuxer(self.directory / (name + suffix), **self._live_options)
        self.muxers[participant] = muxer
        self._live_files.append(muxer)
        self._live_owners[muxer.path] = participant
        return muxer

    def _finish(self, track_id: str) -> None:
        recorder = self.recorders.pop(track_id, None)
        if recorder is not None:
            recorder.stop()
            self.finished.append(recorder)

    def _on_event(self, event: RoomEvent) -> None:
        if self.stopped:
            return
        if isinstance(event, TrackPublishedEvent):
            member = self.room.members.get(event.participant_id)
            forwarder = member.publications.get(event.track_id) if member else None
            if forwarder is not None:
                self._start(forwarder)
        elif isinstance(event, TrackUnpublishedEvent):
            self._finish(event.track_id)
        elif isinstance(event, RoomClosedEvent):
            self._closing = asyncio.get_running_loop().create_task(self.stop())

    async def stop(self) -> list[Path]:
        """Stop recording and wait until every file is written; returns them.

        Every caller waits, also one calling while another's stop (or the
        room closing) is still writing.
        """
        if self._stopping is None:
            self.stopped = True
            self._unsubscribe()
            for track_id in list(self.recorders):
                self._finish(track_id)
            self._stopping = asyncio.get_running_loop().create_task(
                self._writer.close()
            )
            self._stopping.add_done_callback(
                lambda _: logger.info("room %s: recording stopped", self.room.id)
            )
        await asyncio.shield(self._stopping)
        return self.files
