"""Room events, delivered to listeners registered with :meth:`Room.add_listener`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActiveSpeakerChangedEvent",
    "DataDroppedEvent",
    "DataMessageEvent",
    "HostAwayEvent",
    "LayerChangedEvent",
    "MediaFlowingEvent",
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
    """A participant joined the room (``role`` is ``"host"`` or
    ``"participant"``); :class:`MediaFlowingEvent` tells when its media
    starts to flow."""

    room_id: str
    participant_id: str
    role: str


@dataclass(frozen=True)
class ParticipantLeftEvent:
    """A participant left the room or was removed; its tracks are already
    unpublished.

    ``reason`` says why: ``"left"`` (its own ``leave``, or a WHIP/WHEP
    ``DELETE``), ``"page unloaded"`` (a ``leave`` with ``rejoin``: its seat,
    or the host's room, waits for the grace), ``"websocket closed"`` /
    ``"websocket lost"`` (signalling gone and not resumed in time),
    ``"signalling backlog"`` (it did not read its messages),
    ``"connection failed"`` / ``"connection closed"`` (the peer connection,
    e.g. ICE consent expired), ``"credentials expired"`` (never connected
    in time), ``"cpu_budget"`` (over :attr:`pysfu.LimitsConfig.cpu_budget`),
    ``"failed to start"``, ``"replaced by the host's rejoin"`` /
    ``"replaced by its rejoin"`` (the same person came back on a new
    connection), ``"worker failed"`` (its worker process died), or the
    reason the room closed with when it was still inside.
    """

    room_id: str
    participant_id: str
    role: str
    reason: str


@dataclass(frozen=True)
class TrackPublishedEvent:
    """A participant's track started to be forwarded to the room's other
    members (``kind`` ``"audio"`` or ``"video"``, ``codec`` e.g.
    ``"VP8"``)."""

    room_id: str
    participant_id: str
    track_id: str
    kind: str
    codec: str


@dataclass(frozen=True)
class TrackUnpublishedEvent:
    """A published track stopped being forwarded: its publisher left or
    stopped sending it."""

    room_id: str
    participant_id: str
    track_id: str
    kind: str


@dataclass(frozen=True)
class RoomClosedEvent:
    """The room closed; every member was told and removed. The last event a
    room sends.

    ``reason``: ``"host left"`` (the host ended the call, or did not come
    back within :attr:`pysfu.LimitsConfig.host_grace`), ``"idle"`` (no host
    connected, or empty, for too long), ``"closed"`` (``close_room`` or
    :meth:`pysfu.Room.close` without a reason), ``"server shutting
    down"``, ``"worker failed"``, ``"moved to another node"`` (a cluster
    node lost the room's claim), ``"host failed to join"`` (WHIP), or what
    the application passed to ``close_room``.
    """

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


@dataclass(frozen=True)
class HostAwayEvent:
    """The host went away without ending the call; the room stays open for
    ``grace`` seconds (:attr:`pysfu.LimitsConfig.host_grace`) waiting for a
    host to join again (a :class:`ParticipantJoinedEvent` with role
    ``"host"``), then closes with reason ``"host left"``.

    ``reason``: why the host went, as in its :class:`ParticipantLeftEvent`:
    ``"page unloaded"`` (its page reloaded or closed), ``"websocket lost"``
    (its signalling did not come back), ``"connection failed"``, ...
    """

    room_id: str
    participant_id: str
    reason: str
    grace: float


@dataclass(frozen=True)
class MediaFlowingEvent:
    """Media of a participant started to flow, once per participant and
    ``direction``:

    - ``"publishing"``: the server received and forwards the participant's
      first RTP packet (of track ``track_id``, a ``kind`` track);
    - ``"receiving"``: the server sent the participant its first RTP packet
      (of ``track_id``, published by another participant).

    Between joining and these events lie ICE, DTLS and the first key frame:
    a participant that never gets them has no working media.
    """

    room_id: str
    participant_id: str
    direction: str
    track_id: str
    kind: str


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
    | HostAwayEvent
    | MediaFlowingEvent
)
