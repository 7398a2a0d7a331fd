"""The app's recording: the host's Record button, files under ``--record-dir``.

A room created by the app gets :meth:`AppRecordings.control` as its
:attr:`~pysfu.Room.recording_control`: the host's ``record`` message (on)
records the room under ``DIR/<room>/<start time>/``; off, or the room
closing, stops it and converts the files to one WebM (or Matroska) file per
participant, ``DIR/<room>/<start time>-<participant>.webm``, in a thread so
the event loop never waits for it. Those finished files are what the host
lists and downloads (:meth:`AppRecordings.finished`): a file being written
has a hidden name until it is complete.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

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

__all__ = ["CONVERTED_SUFFIXES", "AppRecordings", "convert_directory", "safe_name"]

logger = logging.getLogger("pysfu.app.recordings")

#: What the host may list and download: converted files only.
CONVERTED_SUFFIXES = (".webm", ".mkv")


def safe_name(text: str) -> str:
    """``text`` as one path component: no separator, no dot-only name."""
    return quote(text, safe="").replace(".", "%2E") or "_"


class AppRecordings:
    """Recording of the app's rooms under one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._conversions: set[asyncio.Task[None]] = set()
        #: display names of the participants of recorded rooms, by room id
        #: and participant id: the listing says whose a file is
        self._names: dict[str, dict[str, str]] = {}

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
            room.record(self.room_directory(room.id) / stamp)
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
        self._background(self._convert(recording, names))

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
