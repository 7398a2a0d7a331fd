"""Who is speaking: active-speaker detection from RFC 6464 audio levels.

Publishers (browsers, aiortc) put the level of each audio packet in its
header extension ``urn:ietf:params:rtp-hdrext:ssrc-audio-level``, so the SFU
can tell who speaks without decoding anything (as mediasoup's
AudioLevelObserver and Janus's audiobridge/videoroom ``audiolevel`` do).
:class:`SpeakerDetector` is the decision, fed levels with explicit times;
:class:`SpeakerMonitor` connects it to a room's audio tracks, emits the room
events and tells each client what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._slots import sleep_slotted
from .config import SpeakerConfig
from .events import ActiveSpeakerChangedEvent, RoomEvent, SpeakingChangedEvent
from .forwarding import Forwarder
from .messages import Speaking
from .ports import Member, RoomPort
from .rtp.extensions import audio_level

__all__ = [
    "AUDIO_LEVEL_URI",
    "SILENCE",
    "SpeakerDetector",
    "SpeakerMonitor",
    "SpeakerUpdate",
]

logger = logging.getLogger(__name__)

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

#: The level of a publisher that sent nothing during an interval (dBov).
SILENCE = -127.0


@dataclass(frozen=True)
class SpeakerUpdate:
    """What one :meth:`SpeakerDetector.evaluate` changed."""

    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    active_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.started or self.stopped or self.active_changed)


class SpeakerDetector:
    """Decides who speaks from audio levels averaged over intervals.

    Call :meth:`add` with each packet's level and :meth:`evaluate` once per
    interval; nothing here reads a clock, so tests drive it with their own
    times. See :class:`~pysfu.config.SpeakerConfig` for the rules.
    """

    def __init__(self, config: SpeakerConfig | None = None) -> None:
        self.config = config or SpeakerConfig()
        #: participant id -> [sum of levels, packet count] in this interval
        self._sums: dict[str, list[float]] = {}
        #: Average level (dBov) of the last interval, per publisher.
        self.levels: dict[str, float] = {}
        #: Publishers speaking now, in the order they started.
        self.speaking: list[str] = []
        #: The loudest speaker (with hysteresis), or ``None`` in silence.
        self.active: str | None = None
        self._quiet_since: dict[str, float] = {}
        self._removed: list[str] = []  # stopped speaking by leaving

    def track(self, participant_id: str) -> None:
        """Start considering a publisher (silent until its levels arrive)."""
        self._sums.setdefault(participant_id, [0.0, 0.0])

    def add(self, participant_id: str, level: float) -> None:
        """One packet's level in dBov (-127..0) from a publisher."""
        sums = self._sums.get(participant_id)
        if sums is None:
            sums = self._sums[participant_id] = [0.0, 0.0]
        sums[0] += max(SILENCE, min(0.0, level))
        sums[1] += 1

    def remove(self, participant_id: str) -> None:
        """Forget a publisher (it left); :meth:`evaluate` reports the change."""
        self._sums.pop(participant_id, None)
        self.levels.pop(participant_id, None)
        self._quiet_since.pop(participant_id, None)
        if participant_id in self.speaking:
            self.speaking.remove(participant_id)
            self._removed.append(participant_id)

    def evaluate(self, now: float) -> SpeakerUpdate:
        """Close the current interval at time ``now`` (seconds) and decide."""
        config = self.config
        started: list[str] = []
        stopped, self._removed = self._removed, []
        for participant_id, sums in self._sums.items():
            level = sums[0] / sums[1] if sums[1] else SILENCE
            sums[0] = sums[1] = 0.0
            self.levels[participant_id] = level
            if participant_id not in self.speaking:
                if level >= config.speaking_level:
                    self.speaking.append(participant_id)
                    started.append(participant_id)
                continue
            if level >= config.silent_level:
                self._quiet_since.pop(participant_id, None)
                continue
            since = self._quiet_since.setdefault(participant_id, now)
            if now - since >= config.hold:
                self.speaking.remove(participant_id)
                del self._quiet_since[participant_id]
                stopped.append(participant_id)
        previous = self.active
        self.active = self._choose_active()
        return SpeakerUpdate(
            tuple(started), tuple(stopped), active_changed=self.active != previous
        )

    def _choose_active(self) -> str | None:
        if not self.speaking:
            return None
        loudest = max(self.speaking, key=lambda p: self.levels.get(p, SILENCE))
        current = self.active
        if current is None or current not in self.speaking:
            return loudest
        margin = self.config.switch_margin
        if (
            self.levels.get(loudest, SILENCE)
            >= self.levels.get(current, SILENCE) + margin
        ):
            return loudest
        return current

    def speakers(self) -> list[tuple[str, float]]:
        """``(participant id, level)`` of everyone speaking, loudest first."""
        return sorted(
            ((p, self.levels.get(p, SILENCE)) for p in self.speaking),
            key=lambda item: -item[1],
        )


class SpeakerMonitor:
    """Runs a room's :class:`SpeakerDetector` on its published audio tracks.

    Each audio forwarder gets a packet observer that reads the level from the
    raw packet (with the extension id the publisher negotiated). Every
    ``interval`` seconds, while the room has audio tracks, the monitor
    evaluates, emits :class:`~pysfu.events.SpeakingChangedEvent` and
    :class:`~pysfu.events.ActiveSpeakerChangedEvent`, and sends each member
    whose view changed a :class:`~pysfu.messages.Speaking` message. A member
    only hears about publishers the room's eligibility policy lets it receive
    (and about itself). Events go to ``emit``, by default the room's
    :meth:`~pysfu.ports.RoomPort.emit`.
    """

    def __init__(
        self,
        room: RoomPort[Any],
        config: SpeakerConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        emit: Callable[[RoomEvent], None] | None = None,
    ) -> None:
        self.detector = SpeakerDetector(config)
        self._room = room
        self._emit = emit if emit is not None else room.emit
        self._clock = clock
        self._forwarders: dict[str, Forwarder] = {}  # by track id
        self._sent: dict[str, tuple[tuple[str, ...], str | None]] = {}
        self._views_dirty = False
        self._task: asyncio.Task[None] | None = None

    def track(self, forwarder: Forwarder) -> None:
        """Watch the levels of a published audio track."""
        publisher_id = forwarder.publisher_id
        detector = self.detector

        def observe(data: bytes) -> None:
            ext_id = forwarder.header_extensions.get(AUDIO_LEVEL_URI)
            if ext_id is not None:
                level = audio_level(data, ext_id)
                if level is not None:
                    detector.add(publisher_id, level)

        forwarder.packet_observer = observe
        self._forwarders[forwarder.track_id] = forwarder
        detector.track(publisher_id)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def untrack(self, forwarder: Forwarder) -> None:
        """Stop watching a track (unpublished); its publisher may stop speaking."""
        if self._forwarders.pop(forwarder.track_id, None) is None:
            return
        forwarder.packet_observer = None
        publisher_id = forwarder.publisher_id
        if not any(f.publisher_id == publisher_id for f in self._forwarders.values()):
            self.detector.remove(publisher_id)

    def members_changed(self, left: str | None = None) -> None:
        """Someone joined or left: views may differ at the next interval."""
        if left is not None:
            self._sent.pop(left, None)
        self._views_dirty = True

    async def _run(self) -> None:
        interval = self.detector.config.interval
        while True:
            await sleep_slotted(interval)  # one wake-up for every room
            try:
                await self.update(self._clock())
            except Exception:
                logger.exception("speaker detection in %s failed", str(self._room))
            if not self._forwarders and not self.detector.speaking:
                self._task = None
                return

    async def update(self, now: float) -> None:
        """Evaluate one interval and tell whoever needs to know."""
        room = self._room
        detector = self.detector
        update = detector.evaluate(now)
        for participant_id in update.started:
            self._emit(
                SpeakingChangedEvent(
                    room.id, participant_id, True, detector.levels[participant_id]
                )
            )
        for participant_id in update.stopped:
            self._emit(
                SpeakingChangedEvent(
                    room.id,
                    participant_id,
                    False,
                    detector.levels.get(participant_id, SILENCE),
                )
            )
        if update.active_changed:
            active = detector.active
            self._emit(
                ActiveSpeakerChangedEvent(
                    room.id,
                    active,
                    detector.levels.get(active) if active is not None else None,
                )
            )
        if update or self._views_dirty:
            self._views_dirty = False
            await self._notify()

    async def _notify(self) -> None:
        room = self._room
        speakers = self.detector.speakers()
        for member in list(room.members.values()):
            view = self._view_for(member, speakers)
            key = (tuple(p for p, _ in view), self._active_in(view))
            if self._sent.get(member.id, ((), None)) == key:
                continue
            self._sent[member.id] = key
            await member.send(
                Speaking(
                    speakers=[
                        {"participant_id": p, "level": round(level)}
                        for p, level in view
                    ],
                    active=key[1],
                )
            )

    def _view_for(
        self, member: Member, speakers: list[tuple[str, float]]
    ) -> list[tuple[str, float]]:
        room = self._room
        view = []
        for participant_id, level in speakers:
            publisher = room.members.get(participant_id)
            if publisher is None:
                continue
            if publisher is member or room.eligible(publisher, member):
                view.append((participant_id, level))
        return view

    def _active_in(self, view: list[tuple[str, float]]) -> str | None:
        """The room's active speaker if visible, else the loudest visible one."""
        visible = [p for p, _ in view]
        if self.detector.active in visible:
            return self.detector.active
        return visible[0] if visible else None

    async def close(self) -> None:
        for forwarder in self._forwarders.values():
            forwarder.packet_observer = None
        self._forwarders.clear()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
