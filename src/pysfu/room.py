"""Rooms: membership, eligibility, routing publications, events.

The registry that creates, finds and closes them is :class:`pysfu.SFU`
(:mod:`pysfu.sfu`), which a room knows as a :class:`RoomRegistry`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ._aiortc import validate_ice_credentials
from .config import SFUConfig
from .datachannel import DataFilter, envelope, message_size
from .errors import (
    DuplicateParticipant,
    HostTaken,
    RoomClosedError,
    RoomFull,
    SignallingError,
)
from .events import (
    DataDroppedEvent,
    DataMessageEvent,
    HostAwayEvent,
    LayerChangedEvent,
    MediaFlowingEvent,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomClosedEvent,
    RoomEvent,
    TrackPublishedEvent,
    TrackUnpublishedEvent,
)
from .forwarding import Forwarder
from .forwarding.ports import Source, Subscriber
from .messages import (
    HostAway,
    Joined,
    ParticipantJoined,
    ParticipantLeft,
    Recording,
    RoomClosed,
)
from .participant import Participant
from .peer.answering import ClientOffer
from .ports import Outbox, Role, RoleName
from .speaker import SpeakerMonitor
from .stats import ParticipantStats, RoomStats, SubscriptionStats, Totals

__all__ = [
    "EligibilityPolicy",
    "RecordingControl",
    "Room",
    "RoomListener",
    "RoomRegistry",
    "everyone_else",
    "host_only",
]
if TYPE_CHECKING:
    from .recording import RoomRecording

logger = logging.getLogger(__name__)

#: Decides whether ``subscriber`` receives what ``publisher`` publishes.
EligibilityPolicy = Callable[[Participant, Participant], bool]
RoomListener = Callable[[RoomEvent], None]
#: Starts (``True``) or stops recording a room when its host asks (a
#: :class:`~pysfu.messages.Record` message); see :attr:`Room.recording_control`.
RecordingControl = Callable[["Room", bool], Awaitable[None]]


class RoomRegistry(Protocol):
    """What a :class:`Room` needs from the registry that made it: a
    :class:`pysfu.SFU`, whose configuration it runs with and whose totals
    keep what departed members did."""

    @property
    def config(self) -> SFUConfig: ...
    @property
    def retired(self) -> Totals:
        """Counters of participants that left (see :meth:`pysfu.SFU.totals`)."""
        ...

    def record_departure(self, stats: ParticipantStats, reason: str = "left") -> None:
        """Fold a departing member's counters into :attr:`retired`."""
        ...

    def room_closed(self, room: Room) -> None:
        """``room`` has closed: forget it."""
        ...


def everyone_else(publisher: Participant, subscriber: Participant) -> bool:
    """The default policy: everyone receives everyone else in the room."""
    return publisher is not subscriber


def host_only(publisher: Participant, subscriber: Participant) -> bool:
    """A "stage": only the host is forwarded, to everyone else."""
    return publisher.role is Role.HOST and publisher is not subscriber


class Room:
    """A space of one host and up to ``max_participants`` participants.

    Everyone in a room receives what the eligibility policy allows (by
    default everyone else's audio and video), and the same for data channel
    messages. Rooms share nothing: media, messages and events of one never
    reach another. Create rooms with :meth:`SFU.create_room`.
    """

    def __init__(
        self,
        room_id: str,
        *,
        sfu: RoomRegistry,
        max_participants: int = 1,
        eligibility: EligibilityPolicy = everyone_else,
        close_when_host_leaves: bool = True,
        video_codecs: tuple[str, ...] | None = None,
        data_filter: DataFilter[Participant] | None = None,
    ) -> None:
        if max_participants < 0:
            raise ValueError("max_participants must be >= 0")
        self.id = room_id
        self.max_participants = max_participants
        self.eligibility = eligibility
        self.close_when_host_leaves = close_when_host_leaves
        self.video_codecs = video_codecs
        #: Sees every data channel message before it is relayed: returns it,
        #: a replacement, or ``None`` to drop it (see :mod:`pysfu.datachannel`).
        self.data_filter = data_filter
        self.members: dict[str, Participant] = {}
        #: The running :meth:`record` session, if any.
        self.recording: RoomRecording | None = None
        #: What a host's ``record`` message does: set by the application,
        #: which decides where files go (the library writes none on its
        #: own); ``None`` refuses the message with ``recording_disabled``.
        self.recording_control: RecordingControl | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        # (participant id, direction) whose media flows: told once each
        self._media_flowing: set[tuple[str, str]] = set()
        #: Ends the host's grace (closes the room) while the host is away.
        self._host_away: asyncio.TimerHandle | None = None
        self.closed = False
        self._sfu = sfu
        self._listeners: list[RoomListener] = []
        self._speakers = (
            SpeakerMonitor(self, sfu.config.speaker)
            if sfu.config.speaker.enabled
            else None
        )

    # ------------------------------------------------------------------
    # membership

    @property
    def host(self) -> Participant | None:
        return next((p for p in self.members.values() if p.role is Role.HOST), None)

    @property
    def participants(self) -> list[Participant]:
        """Members other than the host."""
        return [p for p in self.members.values() if p.role is Role.PARTICIPANT]

    async def join(
        self,
        participant_id: str,
        role: Role | RoleName,
        outbox: Outbox,
        *,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        name: str | None = None,
        offer: ClientOffer | None = None,
    ) -> Participant:
        """Admit a participant and start negotiating with it.

        ``outbox`` receives every message for the client, starting with
        :class:`~pysfu.signalling.Joined` and the server's first offer.
        ``ice_username_fragment``/``ice_password`` set the server side ICE
        credentials of its connection (the join capability, see the docs).

        With ``offer`` (a WHIP or WHEP client's), the session is fixed by
        that offer instead: the participant answers it once (the answer is in
        ``participant.answerer.answer``) and never renegotiates; see
        :mod:`pysfu.answering`.

        Raises :class:`~pysfu.errors.BadOffer` for an offer that cannot be
        answered, :class:`RoomClosedError`, :class:`HostTaken`, :class:`RoomFull`,
        :class:`DuplicateParticipant`, or ``ValueError`` for malformed ICE
        credentials; the room is unchanged then.
        """
        role = Role(role)
        validate_ice_credentials(ice_username_fragment, ice_password)
        if offer is not None:
            offer.check(self.video_codecs)
        if self.closed:
            raise RoomClosedError(f"room {self.id} is closed")
        if participant_id in self.members:
            raise DuplicateParticipant(f"{participant_id} is already in room {self.id}")
        if role is Role.HOST and self.host is not None:
            raise HostTaken(f"room {self.id} already has a host")
        if role is Role.PARTICIPANT and len(self.participants) >= self.max_participants:
            raise RoomFull(
                f"room {self.id} is full ({self.max_participants} participants)"
            )

        participant = Participant(
            self,
            participant_id,
            role,
            outbox,
            config=self._sfu.config,
            ice_username_fragment=ice_username_fragment,
            ice_password=ice_password,
            video_codecs=self.video_codecs,
            name=name,
            offer=offer,
        )
        others = list(self.members.values())
        self.members[participant_id] = participant
        self._sfu.retired.participants_joined += 1
        await participant.send(
            Joined(
                room=self.id,
                participant_id=participant_id,
                role=role.value,
                participants=[p.describe() for p in others],
            )
        )
        if self.is_recording:  # before any media: everyone knows at once
            await participant.send(Recording(on=True))
        for other in others:
            await other.send(
                ParticipantJoined(participant_id, role.value, participant.name)
            )
        if role is Role.HOST and self._host_away is not None:
            self._host_away.cancel()
            self._host_away = None
            logger.info("room %s: the host is back (%s)", self.id, participant_id)
        self.emit(ParticipantJoinedEvent(self.id, participant_id, role.value))
        if self._speakers is not None:
            self._speakers.members_changed()
        for other in others:
            for forwarder in other.publications.values():
                if self.eligibility(other, participant):
                    participant.subscribe(forwarder)
        try:
            await participant.start()
        except BaseException:
            await self.remove(participant, "failed to start")
            raise
        return participant

    async def remove(self, participant: Participant, reason: str = "left") -> None:
        """Take a participant out: its tracks end for the others, it is closed."""
        if self.members.get(participant.id) is not participant:
            await participant.close()
            return
        del self.members[participant.id]
        for forwarder in list(participant.publications.values()):
            self._unpublish(participant, forwarder)
        self._retire(participant, reason)
        self._media_flowing.discard((participant.id, "publishing"))
        self._media_flowing.discard((participant.id, "receiving"))
        await participant.close()
        logger.info(
            "room %s: %s %s left: %s",
            self.id,
            participant.role.value,
            participant.id,
            reason,
        )
        if self._speakers is not None:
            self._speakers.members_changed(left=participant.id)
        for other in list(self.members.values()):
            await other.send(ParticipantLeft(participant.id, participant.role.value))
        self.emit(
            ParticipantLeftEvent(
                self.id, participant.id, participant.role.value, reason
            )
        )
        if participant.role is Role.HOST and self.close_when_host_leaves:
            grace = self._sfu.config.limits.host_grace
            if reason == "left" or grace <= 0:  # "left": the host ended the call
                await self.close("host left")
            else:
                await self._wait_for_host(participant.id, reason, grace)

    @property
    def host_away(self) -> bool:
        """Whether the room waits for its host to come back (see
        :attr:`pysfu.LimitsConfig.host_grace`)."""
        return self._host_away is not None

    async def _wait_for_host(self, host_id: str, reason: str, grace: float) -> None:
        """The host went without ending the call: keep the room open for
        ``grace`` seconds, telling the others, unless a host joins."""
        logger.info(
            "room %s: host %s went away (%s); waiting %g s for it to come back",
            self.id,
            host_id,
            reason,
            grace,
        )
        if self._host_away is not None:
            self._host_away.cancel()
        self._host_away = asyncio.get_running_loop().call_later(
            grace, self._host_gone, grace
        )
        for other in list(self.members.values()):
            await other.send(HostAway(host_id, grace))
        self.emit(HostAwayEvent(self.id, host_id, reason, grace))

    def _host_gone(self, grace: float) -> None:
        self._host_away = None
        if self.closed or self.host is not None:
            return
        logger.info("room %s: the host did not come back within %g s", self.id, grace)
        task = asyncio.get_running_loop().create_task(self.close("host left"))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def _retire(self, participant: Participant, reason: str) -> None:
        self._sfu.record_departure(participant.stats(), reason)

    def retire(self, stats: SubscriptionStats) -> None:
        """Count a subscription that ended into the SFU's totals (called by
        the subscriber, exactly once per subscription)."""
        self._sfu.retired.add_subscription(stats)

    # ------------------------------------------------------------------
    # tracks

    def eligible(self, publisher: Participant, subscriber: Participant) -> bool:
        """Whether ``subscriber`` receives what ``publisher`` publishes (the
        :attr:`eligibility` policy)."""
        return self.eligibility(publisher, subscriber)

    def publish(self, publisher: Participant, forwarder: Forwarder) -> None:
        """A member's track is ready (its codecs are known): tell the
        listeners and forward it to every eligible member. Called by the
        publishing :class:`~pysfu.Participant`."""
        codec = forwarder.primary_codec
        self.emit(
            TrackPublishedEvent(
                self.id,
                publisher.id,
                forwarder.track_id,
                forwarder.kind,
                codec.mime_type if codec else "",
            )
        )
        if forwarder.kind == "video":
            forwarder.on_layer_changed = self._layer_changed
        forwarder.on_first_media = self._first_media
        forwarder.on_first_forward = self._first_forward
        for subscriber in self.members.values():
            if self.eligibility(publisher, subscriber):
                subscriber.subscribe(forwarder)
        if self._speakers is not None and forwarder.kind == "audio":
            self._speakers.track(forwarder)

    def _media_flows(
        self, participant_id: str, direction: str, forwarder: Source
    ) -> None:
        if (participant_id, direction) in self._media_flowing:
            return
        if participant_id not in self.members:
            return  # it left meanwhile
        self._media_flowing.add((participant_id, direction))
        self.emit(
            MediaFlowingEvent(
                self.id, participant_id, direction, forwarder.track_id, forwarder.kind
            )
        )

    def _first_media(self, forwarder: Forwarder) -> None:
        self._media_flows(forwarder.publisher_id, "publishing", forwarder)

    def _first_forward(self, downtrack: Subscriber) -> None:
        self._media_flows(downtrack.subscriber_id, "receiving", downtrack.forwarder)

    def _layer_changed(
        self, downtrack: Subscriber, before: int | None, after: int | None
    ) -> None:
        forwarder = downtrack.forwarder
        self.emit(
            LayerChangedEvent(
                self.id,
                downtrack.subscriber_id,
                forwarder.publisher_id,
                forwarder.track_id,
                None if after is None else forwarder.rids[after],
                None if before is None else forwarder.rids[before],
            )
        )

    def _unpublish(self, publisher: Participant, forwarder: Forwarder) -> None:
        if self._speakers is not None:
            self._speakers.untrack(forwarder)
        forwarder.close()  # each subscriber's session detaches its downtrack
        self.emit(
            TrackUnpublishedEvent(
                self.id, publisher.id, forwarder.track_id, forwarder.kind
            )
        )

    # ------------------------------------------------------------------
    # data channels and speakers

    def relay_data(self, sender: Participant, data: str | bytes) -> tuple[str, ...]:
        """Relay a message of ``sender`` (already within the limits) to the
        members eligible to receive from it; returns their ids.

        Called by the sender's :class:`~pysfu.datachannel.DataChannel`; the
        room's ``data_filter`` sees the message first.
        """
        if self.data_filter is not None:
            try:
                filtered = self.data_filter(sender, data)
            except Exception:
                logger.exception("data filter of %s failed; message dropped", self)
                filtered = None
            if filtered is None:
                if sender.data is not None:
                    sender.data.counters.messages_dropped += 1
                self.emit(
                    DataDroppedEvent(self.id, sender.id, "filtered", message_size(data))
                )
                return ()
            data = filtered
        message = envelope(sender.id, sender.name, data)
        delivered = tuple(
            member.id
            for member in list(self.members.values())
            if member is not sender
            and member.data is not None
            and self.eligibility(sender, member)
            and member.data.deliver(message)
        )
        self.emit(DataMessageEvent(self.id, sender.id, data, delivered))
        return delivered

    def send_data(
        self, data: str | bytes, *, to: Iterable[str] | None = None
    ) -> tuple[str, ...]:
        """Send a message from the server (``"from": null``) to the members
        with the ids in ``to``, or to every member; returns who got it."""
        message = envelope(None, None, data)
        wanted = None if to is None else set(to)
        return tuple(
            member.id
            for member in list(self.members.values())
            if (wanted is None or member.id in wanted)
            and member.data is not None
            and member.data.deliver(message)
        )

    @property
    def speakers(self) -> list[tuple[str, float]]:
        """``(participant id, level in dBov)`` of who speaks now, loudest first."""
        return self._speakers.detector.speakers() if self._speakers else []

    @property
    def active_speaker(self) -> str | None:
        """The participant speaking loudest now (with hysteresis), if any."""
        return self._speakers.detector.active if self._speakers else None

    # ------------------------------------------------------------------
    # events

    def add_listener(self, listener: RoomListener) -> Callable[[], None]:
        """Call ``listener`` with every event of this room; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: RoomEvent) -> None:
        """Call every listener with ``event`` (a failing one is logged)."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("room listener failed on %s", event)

    async def close(self, reason: str = "closed") -> None:
        """Close the room for everyone in it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._host_away is not None:
            self._host_away.cancel()
            self._host_away = None
        logger.info("room %s closed: %s", self.id, reason)
        if self._speakers is not None:
            await self._speakers.close()
        members = list(self.members.values())
        self.members.clear()
        for participant in members:
            self._retire(participant, reason)
            await participant.send(RoomClosed(reason))
        await asyncio.gather(*(p.close() for p in members), return_exceptions=True)
        self.emit(RoomClosedEvent(self.id, reason))
        self._sfu.room_closed(self)

    def record(self, directory: str | Path, *, live: bool = False) -> RoomRecording:
        """Record every track of this room, now and later, under ``directory``.

        No codec runs: packets are written as received (see
        :mod:`pysfu.recording`). Recording stops with :meth:`stop_recording`
        or when the room closes; ``live`` muxes each participant's WebM as
        packets arrive. Raises ``RuntimeError`` if already recording.
        """
        from .recording import RoomRecording

        if self.recording is not None and not self.recording.stopped:
            raise RuntimeError(f"room {self.id} is already recording")
        self.recording = RoomRecording(self, directory, live=live)
        task = asyncio.get_running_loop().create_task(self._announce_recording())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)
        return self.recording

    async def stop_recording(self) -> list[Path]:
        """Stop recording; returns the files once everything is written."""
        recording, self.recording = self.recording, None
        if recording is None:
            return []
        files = await recording.stop()
        await self._announce_recording()
        return files

    @property
    def is_recording(self) -> bool:
        """Whether a :meth:`record` session runs (members are told, see
        :class:`~pysfu.messages.Recording`)."""
        return self.recording is not None and not self.recording.stopped

    async def _announce_recording(self) -> None:
        on = self.is_recording
        for member in list(self.members.values()):
            await member.send(Recording(on=on))

    async def control_recording(self, participant: Participant, on: bool) -> None:
        """A member's ``record`` message: only the host's, and only if the
        application set :attr:`recording_control`; raises
        :class:`SignallingError` (``not_host``, ``recording_disabled``)."""
        if participant.role is not Role.HOST:
            raise SignallingError("not_host", "only the host may record the room")
        if self.recording_control is None:
            raise SignallingError(
                "recording_disabled", "this server does not record rooms"
            )
        await self.recording_control(self, on)

    def stats(self) -> RoomStats:
        """A snapshot of the counters of everyone in the room."""
        return RoomStats.of(self)

    def __repr__(self) -> str:
        return f"<Room {self.id} {len(self.members)} members>"


def __getattr__(name: str) -> object:
    # SFU moved to pysfu.sfu, which imports this module: the old name is
    # looked up when asked for, not imported (that would be a cycle)
    if name == "SFU":
        warnings.warn(
            "pysfu.room.SFU moved: import pysfu.SFU (or pysfu.sfu.SFU)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("pysfu.sfu").SFU
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
