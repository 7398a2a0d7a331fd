"""The frames of the pool's pipe to a worker, as typed values.

Every frame is a frozen dataclass with a ``type`` tag. Requests go from the
pool to a worker: those sent with :meth:`WorkerProcess.request
<pysfu.workers.process.WorkerProcess.request>` carry an ``id`` and get one
:class:`Reply`; :class:`Handle` and :class:`Refuse` are sent without one, in
order with the rest. Notices go from a worker to the pool. Their JSON forms
(:func:`pysfu.workers.codec.frame_to_json`) and the registries that decode
them are derived from the unions :data:`Request` and :data:`Notice`, as the
server messages and room events are, so a frame type cannot be left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "USAGE_INTERVAL",
    "CloseRoom",
    "Closed",
    "CreateRoom",
    "EventNotice",
    "Frame",
    "Handle",
    "Init",
    "Join",
    "Leave",
    "LeaveUnlessConnected",
    "Notice",
    "Out",
    "PendingOffer",
    "Refuse",
    "Reply",
    "Request",
    "Shutdown",
    "Stats",
    "Usage",
]

# -- pool -> worker ------------------------------------------------------------


@dataclass(frozen=True)
class Init:
    """The first request: the worker's SFU config and its
    :class:`~pysfu.workers.hook.RoomHook` or ``None`` (each dumped, see
    ``codec.dump_object``)."""

    config: str
    room_hook: str | None = None
    type: ClassVar[str] = "init"


@dataclass(frozen=True)
class CreateRoom:
    """Create a room; replied with its id. ``eligibility`` is a dumped
    function, ``None`` for the default policy."""

    room: str
    max_participants: int = 1
    close_when_host_leaves: bool = True
    video_codecs: list[str] | None = None
    eligibility: str | None = None
    type: ClassVar[str] = "create_room"


@dataclass(frozen=True)
class Join:
    """Join a room; replied with the participant's display name."""

    room: str
    participant: str
    role: str
    name: str | None = None
    ice_username_fragment: str | None = None
    ice_password: str | None = None
    type: ClassVar[str] = "join"


@dataclass(frozen=True)
class Stats:
    """Replied with ``{"rooms": [...], "totals": {...}}`` (see the codec)."""

    type: ClassVar[str] = "stats"


@dataclass(frozen=True)
class CloseRoom:
    room: str
    reason: str = "closed"
    type: ClassVar[str] = "close_room"


@dataclass(frozen=True)
class Handle:
    """A client message (its JSON form, checked in the worker), not replied."""

    room: str
    participant: str
    message: Any
    type: ClassVar[str] = "handle"


@dataclass(frozen=True)
class Refuse:
    """Answer the client with an error, in order with its messages; not replied."""

    room: str
    participant: str
    code: str
    message: str
    type: ClassVar[str] = "refuse"


@dataclass(frozen=True)
class Leave:
    """Remove a participant; replied once it is gone."""

    room: str
    participant: str
    reason: str = "left"
    type: ClassVar[str] = "leave"


@dataclass(frozen=True)
class LeaveUnlessConnected:
    """Remove a participant not connected yet; replied with whether it did."""

    room: str
    participant: str
    reason: str = "left"
    type: ClassVar[str] = "leave_unless_connected"


@dataclass(frozen=True)
class PendingOffer:
    """Replied with the SDP of the offer waiting for an answer, or ``None``."""

    room: str
    participant: str
    type: ClassVar[str] = "pending_offer"


@dataclass(frozen=True)
class Shutdown:
    """Close every room (participants are told), reply, then exit."""

    type: ClassVar[str] = "shutdown"


Request = (
    Init
    | CreateRoom
    | Join
    | Stats
    | CloseRoom
    | Handle
    | Refuse
    | Leave
    | LeaveUnlessConnected
    | PendingOffer
    | Shutdown
)

# -- worker -> pool ------------------------------------------------------------

#: Seconds between two :class:`Usage` notices of a worker.
USAGE_INTERVAL = 1.0


@dataclass(frozen=True)
class Reply:
    """The answer to request ``id``: its ``result``, or the ``error`` it
    raised (``codec.error_to_json``'s form)."""

    id: int
    result: Any = None
    error: dict[str, str] | None = None
    type: ClassVar[str] = "reply"


@dataclass(frozen=True)
class Out:
    """A server message for a client, in its JSON form
    (``codec.server_message_to_json``)."""

    room: str
    participant: str
    message: dict[str, Any]
    type: ClassVar[str] = "out"


@dataclass(frozen=True)
class Closed:
    """A participant is closed (left, failed, or its room closed)."""

    room: str
    participant: str
    type: ClassVar[str] = "closed"


@dataclass(frozen=True)
class EventNotice:
    """A room event (its JSON form, ``codec.event_to_json``)."""

    event: dict[str, Any]
    type: ClassVar[str] = "event"


@dataclass(frozen=True)
class Usage:
    """The CPU seconds a worker's process has spent so far, sent unasked
    every :data:`USAGE_INTERVAL` s: the CPU load a cluster node publishes
    with its heartbeat counts its workers' (the pool knows their rooms and
    participants already)."""

    cpu_seconds: float
    type: ClassVar[str] = "usage"


Notice = Reply | Out | Closed | EventNotice | Usage

Frame = Request | Notice
