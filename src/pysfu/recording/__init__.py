"""Recording published tracks without transcoding.

:class:`TrackRecorder` writes one track's RTP packets (retransmissions
unwrapped) and its publisher's sender reports to a file, off the event loop;
:class:`RoomRecording` (``Room.record()``) does it for every track of a room.
`convert` turns recordings into WebM or Matroska files, still without
decoding; or :class:`LiveMuxer` (``Room.record(dir, live=True)``) muxes them
as packets arrive. From a shell::

    python -m pysfu.recording info FILE...
    python -m pysfu.recording convert -o OUT.webm FILE...
    python -m pysfu.recording convert-room DIRECTORY

See ``docs/how-to/recording.md``.
"""

from __future__ import annotations

from .convert import (
    ConversionResult,
    ConvertedTrack,
    convert,
    group_by_participant,
    suffix_for,
)
from .format import BadRecording, Record, TrackHeader, read_recording
from .live import LiveMuxer
from .recorder import RecordingStats, RoomRecording, TrackRecorder, record_track
from .writer import RecordingFile, RecordingWriter

__all__ = [
    "BadRecording",
    "ConversionResult",
    "ConvertedTrack",
    "LiveMuxer",
    "Record",
    "RecordingFile",
    "RecordingStats",
    "RecordingWriter",
    "RoomRecording",
    "TrackHeader",
    "TrackRecorder",
    "convert",
    "group_by_participant",
    "read_recording",
    "record_track",
    "suffix_for",
]
