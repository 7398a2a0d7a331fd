"""Recording files written on a background thread.

The event loop only appends bytes to a queue: no system call, no lock and no
wake-up per packet. The writer thread drains the queue every few
milliseconds in batches. When the disk is slower than the media, the queue
stops growing at ``max_pending_bytes`` and further records are dropped and
counted, so a slow disk never stalls forwarding or grows memory.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["RecordSink", "RecordingFile", "RecordingWriter"]

logger = logging.getLogger(__name__)

#: How often the writer thread drains the queue (seconds).
_DRAIN_INTERVAL = 0.05


class RecordSink(Protocol):
    """Takes a recording's bytes on the writer thread instead of a file
    (e.g. a :class:`~pysfu.recording.live.LiveTrackSink`)."""

    def write(self, data: bytes) -> None:
        """One chunk as queued: the file header, or one record."""

    def close(self) -> None:
        """Nothing more comes."""


@dataclass
class RecordingFile:
    """One file being written by a :class:`RecordingWriter`."""

    path: Path
    #: Records accepted and records dropped because the queue was full.
    records_queued: int = 0
    records_dropped: int = 0
    #: Bytes the writer thread has written to the file.
    bytes_written: int = 0
    #: Set by the writer thread when writing failed (e.g. disk full).
    error: str | None = None
    closed: bool = False
    #: Where the bytes go instead of ``path``, if set.
    sink: RecordSink | None = None
    _file: BinaryIO | None = None


class RecordingWriter:
    """Writes any number of recording files from one background thread."""

    def __init__(self, max_pending_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_pending_bytes = max_pending_bytes
        self._queue: collections.deque[tuple[RecordingFile, bytes | None]] = (
            collections.deque()
        )
        # Each counter has one writer thread, so neither needs a lock.
        self._bytes_submitted = 0  # event loop thread
        self._bytes_done = 0  # writer thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet written."""
        return self._bytes_submitted - self._bytes_done

    def open(
        self, path: Path, first_bytes: bytes, sink: RecordSink | None = None
    ) -> RecordingFile:
        """Start a file; ``first_bytes`` (its header) is written first. With
        ``sink``, everything goes to ``sink`` on the writer thread instead."""
        handle = RecordingFile(Path(path), sink=sink)
        self._queue.append((handle, first_bytes))
        self._bytes_submitted += len(first_bytes)
        self._ensure_thread()
        return handle

    def write(self, handle: RecordingFile, data: bytes) -> bool:
        """Queue ``data`` for ``handle``; False (and counted) if it was dropped."""
        if handle.closed or handle.error is not None:
            handle.records_dropped += 1
            return False
        if self._bytes_submitted - self._bytes_done > self.max_pending_bytes:
            if handle.records_dropped == 0:
                logger.warning(
                    "recording %s: the disk is too slow, dropping records",
                    handle.path,
                )
            handle.records_dropped += 1
            return False
        self._queue.append((handle, data))
        self._bytes_submitted += len(data)
        handle.records_queued += 1
        return True

    def close_file(self, handle: RecordingFile) -> None:
        """Write what is queued for ``handle``, then close it."""
        if not handle.closed:
            handle.closed = True
            self._queue.append((handle, None))

    async def close(self) -> None:
        """Write everything queued, close every file and stop the thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="pysfu-recording", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        open_files: set[int] = set()
        handles: dict[int, RecordingFile] = {}
        while True:
            stopping = self._stop.wait(_DRAIN_INTERVAL)
            self._drain(handles, open_files)
            if stopping:
                self._drain(handles, open_files)
                for key in list(open_files):
                    self._close(handles[key])
                return

    def _drain(self, handles: dict[int, RecordingFile], open_files: set[int]) -> None:
        queue = self._queue
        touched: set[int] = set()
        while queue:
            handle, data = queue.popleft()
            key = id(handle)
            if data is None:
                self._close(handle)
                open_files.discard(key)
                handles.pop(key, None)
                continue
            if handle.sink is not None and key not in handles:
                handles[key] = handle  # closed with the others on stop
                open_files.add(key)
            self._bytes_done += len(data)
            if handle.error is not None:
                continue
            if handle.sink is not None:
                try:
                    handle.sink.write(data)
                    handle.bytes_written += len(data)
                except Exception as exc:
                    handle.error = str(exc)
                    logger.warning("recording %s failed: %s", handle.path, exc)
                continue
            try:
                if handle._file is None:
                    handle.path.parent.mkdir(parents=True, exist_ok=True)
                    handle._file = open(handle.path, "wb")  # noqa: SIM115
                    handles[key] = handle
                    open_files.add(key)
                handle._file.write(data)
                handle.bytes_written += len(data)
                touched.add(key)
            except OSError as exc:
                handle.error = str(exc)
                logger.warning("recording %s failed: %s", handle.path, exc)
        for key in touched:
            file = handles[key]._file if key in handles else None
            if file is not None:
                try:
                    file.flush()
                except OSError as exc:
                    handles[key].error = str(exc)

    @staticmethod
    def _close(handle: RecordingFile) -> None:
        if handle.sink is not None:
            try:
                handle.sink.close()
            except Exception as exc:
                handle.error = str(exc)
                logger.warning("recording %s failed: %s", handle.path, exc)
        if handle._file is not None:
            try:
                handle._file.close()
            except OSError as exc:
                handle.error = str(exc)
            handle._file = None
