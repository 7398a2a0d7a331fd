"""Room events, delivered to listeners registered with :meth:`Room.add_listener`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActiveSpeakerChangedEvent",
    "DataDroppedEvent",
    "DataMessageEvent",
    "LayerChangedEvent",
    "ParticipantJoinedEvent",
    "ParticipantLeftEvent",
    "RoomClosedEvent",
    "RoomEvent",
    "SpeakingChangedEvent",
    "TrackPublishedEvent",
    "TrackUnpublishedEvent",
]


@dataclass(frozen=True)
class ParticipantJoinedEvent:
    room_id: str
    participant_id: str
    role: str


@dataclass(frozen=True)
class ParticipantLeftEvent:
    room_id: str
    participant_id: str
    role: str
    reason: str


@dataclass(frozen=True)
class TrackPublishedEvent:
    room_id: str
    participant_id: str
    track_id: str
    kind: str
    codec: str


@dataclass(frozen=True)
class TrackUnpublishedEvent:
    room_id: str
    participant_id: str
    track_id: str
    kind: str


@dataclass(frozen=True)
class RoomClosedEvent:
    room_id: str
    reason: str


@dataclass(frozen=True)
class DataMessageEvent:
    """A participant's data channel message was relayed (after the room's
    ``data_filter``: ``data`` is what the recipients got)."""

    room_id: str
    participant_id: str
    data: str | bytes
    #: Ids of the participants it was delivered to.
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class DataDroppedEvent:
    """A participant's data channel message was not relayed.

    ``reason``: ``"too_large"``, ``"rate_limited"`` or ``"filtered"`` (the
    room's ``data_filter`` returned ``None``).
    """

    room_id: str
    participant_id: str
    reason: str
    size: int


@dataclass(frozen=True)
class SpeakingChangedEvent:
    """A publisher started or stopped speaking (see :mod:`pysfu.speaker`).

    ``level``: its average audio level over the last interval, in dBov.
    """

    room_id: str
    participant_id: str
    speaking: bool
    level: float


@dataclass(frozen=True)
class ActiveSpeakerChangedEvent:
    """The room's loudest speaker changed; ``participant_id`` is ``None`` when
    nobody speaks any more."""

    room_id: str
    participant_id: str | None
    level: float | None


@dataclass(frozen=True)
class LayerChangedEvent:
    """A subscriber now gets another simulcast layer of a video track.

    ``layer``/``previous``: the rids (``"q"``, ``"h"``, ``"f"``, lowest
    first); ``None`` when the subscriber gets no video of the track (its
    estimate is below the lowest layer's bitrate, or it just started).
    """

    room_id: str
    subscriber_id: str
    publisher_id: str
    track_id: str
    layer: str | None
    previous: str | None


RoomEvent = (
    ParticipantJoinedEvent
    | ParticipantLeftEvent
    | TrackPublishedEvent
    | TrackUnpublishedEvent
    | RoomClosedEvent
    | DataMessageEvent
    | DataDroppedEvent
    | SpeakingChangedEvent
    | ActiveSpeakerChangedEvent
    | LayerChangedEvent
)
