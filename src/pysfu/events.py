"""Room events, delivered to listeners registered with :meth:`Room.add_listener`."""

from __future__ import annotations

from dataclasses import dataclass


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


RoomEvent = (
    ParticipantJoinedEvent
    | ParticipantLeftEvent
    | TrackPublishedEvent
    | TrackUnpublishedEvent
    | RoomClosedEvent
)
