"""The app's recording: the host's Record button, files under ``--record-dir``.

A room created by the app gets :meth:`AppRecordings.control` as its
:attr:`~pysfu.Room.recording_control`: the host's ``record`` message (on)
records the room under ``DIR/<room>/<start time>/``; off, or the room
closing, stops it, and each participant's file becomes
``DIR/<room>/<start time>-<participant>.webm`` (``.mkv`` if a codec needs
Matroska). In ``live`` mode (the default) those files are muxed as the
packets arrive, so they exist and grow during the call, a crash leaves a
file playable up to its last second, and stopping costs no conversion; in
``raw`` mode the raw RTP is kept and converted at the stop, in a thread so
the event loop never waits for it. The files under their final names are
what the host lists, downloads and deletes (:meth:`AppRecordings.finished`):
a file being written is not listed until it is complete.

Retention (``keep_days``, ``max_bytes``): :meth:`AppRecordings.prune`
removes what is older, or the oldest beyond the total size; the app runs it
at start-up and every so often.

With ``--workers`` the rooms, and so the recordings, are in worker
processes: the pool pickles an :class:`AppRecordings` (its settings, not
its state) to each worker as its
:class:`~pysfu.workers.hook.RoomHook`, which attaches it to every room
there. The worker writes and renames the files; this process lists, serves,
deletes and prunes them, and leaves the directories of the rooms still open
(:meth:`AppRecordings.prune`'s ``open_rooms``) alone: they may be recording.

After a crash (of the app or of a worker), a recording that was under way
is left in its ``DIR/<room>/<start time>/`` directory, never listed.
:meth:`AppRecordings.recover`, run at start-up before any room exists (and
for the rooms of a worker process that died, as it dies), gives each live
file of such a leftover its listed name with ``-incomplete`` (a live WebM
is playable up to its last written second) and removes the directory; raw
leftovers stay for retention to remove.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from pysfu.events import ParticipantJoinedEvent, RoomClosedEvent, RoomEvent
from pysfu.recording import (
    BadRecording,
    RoomRecording,
    convert,
    group_by_participant,
    suffix_for,
)
from pysfu.recording.recorder import RECORDING_SUFFIX
from pysfu.room import Room

__all__ = [
    "CONVERTED_SUFFIXES",
    "INCOMPLETE_MARKER",
    "RECORD_MODES",
    "AppRecordings",
    "convert_directory",
    "safe_name",
]

logger = logging.getLogger("pysfu.app.recordings")

#: What the host may list and download: converted files only.
CONVERTED_SUFFIXES = (".webm", ".mkv")

#: ``live``: muxed as packets arrive; ``raw``: raw RTP converted at the stop.
RECORD_MODES = ("live", "raw")

#: Ends the listed name of a live file recovered after a crash (before its
#: suffix): playable up to its last written second, not to the stop.
INCOMPLETE_MARKER = "-incomplete"

#: ``YYYYmmddTHHMMSS-``: how the recorder starts a live file's name.
_RECORDER_STAMP = re.compile(r"^\d{8}T\d{6}-")


def safe_name(text: str) -> str:
    """``text`` as one path component: no separator, no dot-only name."""
    return quote(text, safe="").replace(".", "%2E") or "_"


class AppRecordings:
    """Recording of the app's rooms under one directory."""

    def __init__(
        self,
        directory: str | Path,
        *,
        mode: str = "live",
        keep_days: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if mode not in RECORD_MODES:
            raise ValueError(f"recording mode {mode!r}: one of {RECORD_MODES}")
        self.directory = Path(directory)
        self.mode = mode
        #: retention: files older than this many days are removed
        self.keep_days = keep_days
        #: retention: the oldest files are removed beyond this total
        self.max_bytes = max_bytes
        self._conversions: set[asyncio.Task[None]] = set()
        #: the directories of recordings under way: retention leaves them
        self._active: dict[str, Path] = {}
        #: display names of the participants of recorded rooms, by room id
        #: and participant id: the listing says whose a file is
        self._names: dict[str, dict[str, str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a worker process, as its room hook): the settings,
        never the state of the recordings under way here."""
        return {
            "directory": self.directory,
            "mode": self.mode,
            "keep_days": self.keep_days,
            "max_bytes": self.max_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["directory"],
            mode=state["mode"],
            keep_days=state["keep_days"],
            max_bytes=state["max_bytes"],
        )

    def room_directory(self, room_id: str) -> Path:
        return self.directory / safe_name(room_id)

    def attach(self, room: Room) -> None:
        """Let ``room``'s host record it; a recording still running when the
        room closes is stopped and converted."""
        room.recording_control = self.control

        def on_event(event: RoomEvent) -> None:
            if isinstance(event, ParticipantJoinedEvent) and room.is_recording:
                self._remember_names(room)
            elif isinstance(event, RoomClosedEvent) and room.recording is not None:
                self._background(self._stop(room))

        room.add_listener(on_event)

    async def control(self, room: Room, on: bool) -> None:
        """The host's ``record`` message; asking for the current state again
        changes nothing."""
        if on and not room.is_recording:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            directory = self.room_directory(room.id) / stamp
            self._active[room.id] = directory
            room.record(directory, live=self.mode == "live")
            self._remember_names(room)
            logger.info("room %s: the host started recording", room.id)
        elif not on and room.is_recording:
            logger.info("room %s: the host stopped recording", room.id)
            await self._stop(room)

    def _remember_names(self, room: Room) -> None:
        names = self._names.setdefault(room.id, {})
        for member in room.members.values():
            names[member.id] = member.name

    async def _stop(self, room: Room) -> None:
        recording = room.recording
        if recording is None:
            return
        await room.stop_recording()
        names = self._names.pop(room.id, {})  # the next recording starts afresh
        if recording.live:
            self._active.pop(room.id, None)
            self._publish_live(recording, names)
        else:  # retention leaves the raw files until converted
            self._background(self._convert(recording, names))

    def _publish_live(self, recording: RoomRecording, names: dict[str, str]) -> None:
        """Give each finished live file its listed name (a rename: instant)."""
        source = recording.directory  # DIR/<room>/<stamp>/<room>
        stamp = source.parent.name
        target = source.parent.parent
        taken: set[str] = set()
        for participant, path in recording.live_files:
            if not path.is_file():
                continue
            base = f"{stamp}-{safe_name(participant)}"
            name, n = base + path.suffix, 1
            while name in taken:  # a participant who came back: a second file
                n += 1
                name = f"{base}-{n}{path.suffix}"
            taken.add(name)
            about = {"participant": names.get(participant, participant)}
            (target / f".{name}.json").write_text(json.dumps(about, ensure_ascii=False))
            path.replace(target / name)
            logger.info("recording finished: %s", target / name)
        for empty in (source, source.parent):  # nothing else was written there
            try:
                empty.rmdir()
            except OSError:
                logger.warning("recording directory %s is not empty: kept", empty)
                break

    async def _convert(self, recording: RoomRecording, names: dict[str, str]) -> None:
        source = recording.directory  # DIR/<room>/<stamp>/<room>
        stamp = source.parent.name
        target = source.parent.parent
        try:
            outputs = await asyncio.to_thread(
                convert_directory, source, target, stamp, names
            )
        except Exception:
            logger.exception("converting the recording in %s failed", source)
            return
        finally:
            if self._active.get(recording.room.id) == source.parent:
                del self._active[recording.room.id]
        for output in outputs:
            logger.info("recording converted: %s", output)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._conversions.add(task)
        task.add_done_callback(self._conversions.discard)

    async def drain(self) -> None:
        """Wait for every stop and conversion under way (on shutdown)."""
        while self._conversions:
            await asyncio.gather(*list(self._conversions), return_exceptions=True)

    def finished(self, room_id: str) -> list[dict[str, object]]:
        """The converted recordings of a room: ``{"name", "size", "created"}``,
        newest first."""
        directory = self.room_directory(room_id)
        if not directory.is_dir():
            return []
        found = []
        for path in directory.iterdir():
            if (
                path.is_file()
                and not path.name.startswith(".")
                and path.suffix in CONVERTED_SUFFIXES
            ):
                stat = path.stat()
                found.append(
                    {
                        "name": path.name,
                        "size": stat.st_size,
                        "created": stat.st_mtime,
                        "participant": _about(path).get("participant", ""),
                    }
                )
        found.sort(key=lambda f: (f["created"], f["name"]), reverse=True)
        return found

    def file(self, room_id: str, name: str) -> Path | None:
        """The finished recording ``name`` of a room, if it is listed: names
        are looked up, never joined to a path as given."""
        for each in self.finished(room_id):
            if each["name"] == name:
                return self.room_directory(room_id) / name
        return None

    def delete(self, room_id: str, name: str) -> bool:
        """Delete the finished recording ``name`` of a room (a listed name
        only); False if there is none."""
        path = self.file(room_id, name)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        (path.parent / f".{name}.json").unlink(missing_ok=True)
        logger.info("room %s: recording %s deleted by the host", room_id, name)
        return True

    def prune(
        self, now: float | None = None, open_rooms: Collection[str] = ()
    ) -> list[Path]:
        """Apply the retention: remove the recordings older than
        :attr:`keep_days`, then the oldest while all of them together are
        larger than :attr:`max_bytes`. A recording is a finished file (with
        its hidden ``.json``) or the directory of one not finished (raw
        files, a live file whose process died); those under way are kept,
        as are the unfinished ones of ``open_rooms`` (room ids: rooms in
        worker processes, which may be recording). Returns what was
        removed, each logged. Blocking: run it in a thread."""
        if self.keep_days is None and self.max_bytes is None:
            return []
        now = time.time() if now is None else now
        busy = {self.room_directory(room) for room in open_rooms}
        entries = sorted(self._entries(busy), key=lambda e: e[0])  # oldest first
        total = sum(size for _, _, size in entries)
        removed = []
        for modified, path, size in entries:
            too_old = (
                self.keep_days is not None and now - modified > self.keep_days * 86400
            )
            too_big = self.max_bytes is not None and total > self.max_bytes
            if not (too_old or too_big):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                (path.parent / f".{path.name}.json").unlink(missing_ok=True)
            total -= size
            removed.append(path)
            logger.info(
                "retention: removed recording %s (%.1f days old, %d bytes)",
                path,
                (now - modified) / 86400,
                size,
            )
        return removed

    def _entries(self, busy: set[Path]) -> list[tuple[float, Path, int]]:
        """``(last modified, path, bytes)`` of every recording on disk but
        those under way and the unfinished ones under ``busy`` rooms."""
        active = set(self._active.values())
        entries: list[tuple[float, Path, int]] = []
        if not self.directory.is_dir():
            return entries
        for room in self.directory.iterdir():
            if not room.is_dir():
                continue
            for path in room.iterdir():
                if path.is_dir() and path not in active and room not in busy:
                    files = [f.stat() for f in path.rglob("*") if f.is_file()]
                    newest = max((f.st_mtime for f in files), default=0.0)
                    newest = max(newest, path.stat().st_mtime)
                    entries.append((newest, path, sum(f.st_size for f in files)))
                elif (
                    path.is_file()
                    and path.suffix in CONVERTED_SUFFIXES
                    and not path.name.startswith(".")  # not a conversion under way
                ):
                    stat = path.stat()
                    entries.append((stat.st_mtime, path, stat.st_size))
        return entries

    def recover(self, room_id: str | None = None) -> list[Path]:
        """Finish what a crash left: every live file of a recording
        directory that is not under way gets its listed name,
        ``<start time>-<participant><INCOMPLETE_MARKER><suffix>`` (its
        participant's id in the hidden ``.json``, the display name being
        lost), and the directory goes once empty; raw leftovers are left to
        :meth:`prune`. Run it before any room of this directory records (at
        start-up), or for one room (``room_id``) lost with its worker
        process. Returns the files recovered, each logged. Blocking: run it
        in a thread."""
        recovered: list[Path] = []
        if not self.directory.is_dir():
            return recovered
        active = set(self._active.values())
        if room_id is not None:
            rooms = [self.room_directory(room_id)]
        else:
            rooms = list(self.directory.iterdir())
        for room in rooms:
            if not room.is_dir():
                continue
            for stamp in room.iterdir():
                if stamp.is_dir() and stamp not in active:
                    recovered += self._recover_leftover(stamp)
        return recovered

    def _recover_leftover(self, stamp: Path) -> list[Path]:
        target = stamp.parent
        taken = {p.name for p in target.iterdir()}
        recovered = []
        live = sorted(
            p
            for p in stamp.glob("*/*")
            if p.is_file() and p.suffix in CONVERTED_SUFFIXES
        )
        for path in live:
            participant = unquote(_RECORDER_STAMP.sub("", path.stem))
            if path.stat().st_size == 0:  # nothing was written: nothing to play
                path.unlink()
                logger.warning("recording leftover %s was empty: removed", path)
                continue
            base = f"{stamp.name}-{safe_name(participant)}{INCOMPLETE_MARKER}"
            name, n = base + path.suffix, 1
            while name in taken:
                n += 1
                name = f"{base}-{n}{path.suffix}"
            taken.add(name)
            about = {"participant": participant, "incomplete": True}
            (target / f".{name}.json").write_text(json.dumps(about, ensure_ascii=False))
            recovered.append(path.replace(target / name))
            logger.warning(
                "recording %s was cut short (a crash): kept up to its last "
                "second as %s",
                path,
                target / name,
            )
        if live:
            for empty in [*stamp.iterdir(), stamp]:  # <room>/ and <stamp>/
                try:
                    empty.rmdir()
                except OSError:
                    logger.warning("recording leftover %s is not empty: kept", empty)
                    break
        return recovered

    async def keep_pruning(
        self,
        interval: float = 3600.0,
        open_rooms: Callable[[], Collection[str]] = tuple,
    ) -> None:
        """Run :meth:`prune` now and every ``interval`` seconds (a task of the
        app's; cancel it to stop); ``open_rooms`` says which rooms are open
        in worker processes, at each run."""
        while True:
            try:
                await asyncio.to_thread(self.prune, None, set(open_rooms()))
            except OSError:
                logger.exception("retention: pruning %s failed", self.directory)
            await asyncio.sleep(interval)


def _about(path: Path) -> dict[str, str]:
    """What the hidden ``.<name>.json`` next to a converted file says."""
    try:
        about = json.loads((path.parent / f".{path.name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return about if isinstance(about, dict) else {}


def convert_directory(
    source: Path, target: Path, stamp: str, names: dict[str, str] | None = None
) -> list[Path]:
    """Convert a room's recording files (in ``source``) to one file per
    participant in ``target``, named ``<stamp>-<participant id><suffix>``,
    with the participant's display name (``names``) in a hidden
    ``.<name>.json`` beside it; a file appears under its name only once
    complete. Blocking: run it in a thread."""
    outputs = []
    groups = group_by_participant(source.glob(f"*{RECORDING_SUFFIX}"))
    for participant, files in groups.items():
        suffix = suffix_for(files)
        name = f"{stamp}-{safe_name(participant)}{suffix}"
        partial = target / f".{name}.partial{suffix}"
        try:
            convert(files, partial)
        except (ValueError, BadRecording) as exc:  # e.g. no media at all
            logger.warning("recording %s not converted: %s", name, exc)
            partial.unlink(missing_ok=True)
            continue
        about = {"participant": (names or {}).get(participant, participant)}
        (target / f".{name}.json").write_text(json.dumps(about, ensure_ascii=False))
        outputs.append(partial.replace(target / name))
    return outputs
