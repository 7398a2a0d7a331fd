"""One API for rooms, wherever they run: the :class:`Rooms` protocol.

The in-process :class:`pysfu.SFU` (through :meth:`pysfu.SFU.as_rooms`) and
the :class:`pysfu.workers.WorkerPool` (rooms in worker processes) both
implement it, so :class:`~pysfu.admission.Admission`, the signalling
adapters, the metrics collector and the ``pysfu serve`` app are written once
against it. Rooms are named by their id; a join returns the participant's
:class:`~pysfu.ports.SessionParticipant` (a :class:`pysfu.Participant`
in-process, a :class:`pysfu.workers.RemoteParticipant` from a pool).

Everything that can wait for another process is ``async``; :meth:`Rooms.seats`
is not, since :class:`~pysfu.admission.Admission` decides a seat at once
(both implementations answer it from their own records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .config import SFUConfig
from .datachannel import DataFilter
from .events import RoomEvent
from .participant import Participant
from .peer.answering import ClientOffer
from .ports import Outbox, Role, RoleName, SessionParticipant
from .stats import SFUStats, Totals

__all__ = [
    "EligibilityPolicy",
    "JoinRequest",
    "RoomListener",
    "RoomOptions",
    "RoomSeats",
    "Rooms",
    "join_request",
]

#: The kind of participant a :meth:`Rooms.join` returns.
P = TypeVar("P", bound=SessionParticipant, covariant=True)

#: Decides whether ``subscriber`` receives what ``publisher`` publishes
#: (see :func:`pysfu.room.everyone_else`).
EligibilityPolicy = Callable[[Participant, Participant], bool]
#: Called with every event of every room (see :meth:`Rooms.add_listener`).
RoomListener = Callable[[RoomEvent], None]


@dataclass(frozen=True)
class RoomSeats:
    """Who holds a room's seats now (admitted, not yet joined, not counted)."""

    room_id: str
    max_participants: int
    has_host: bool
    #: Members in the participant role.
    participants: int
    #: The codecs publishers may use (:attr:`RoomOptions.video_codecs`).
    video_codecs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RoomOptions:
    """What a room is made with (:meth:`Rooms.create_room`).

    - ``room_id``: ``None`` for a random URL-safe token.
    - ``max_participants``: seats besides the host's.
    - ``eligibility``: who receives whom; ``None`` for everyone else
      (:func:`pysfu.room.everyone_else`). Worker rooms need a picklable
      (module-level) function.
    - ``close_when_host_leaves``: the room closes as its host leaves.
    - ``video_codecs``: restricts and orders the codecs publishers may use,
      e.g. ``("H264",)``.
    - ``data_filter``: moderates data channel messages
      (:attr:`pysfu.Room.data_filter`); in-process rooms only.
    """

    room_id: str | None = None
    max_participants: int = 1
    eligibility: EligibilityPolicy | None = None
    close_when_host_leaves: bool = True
    video_codecs: tuple[str, ...] | None = None
    data_filter: DataFilter[Participant] | None = None


@dataclass(frozen=True)
class JoinRequest:
    """A participant joining a room (:meth:`Rooms.join`).

    ``outbox`` is called with every message for the client, starting with
    ``joined``. ``ice_username_fragment`` and ``ice_password`` are the ICE
    credentials the client was granted (see :mod:`pysfu.admission`);
    ``offer`` is a WHIP/WHEP client's own offer (only where
    :attr:`Rooms.supports_client_offers`).
    """

    room_id: str
    participant_id: str
    role: Role | RoleName
    outbox: Outbox
    name: str | None = None
    ice_username_fragment: str | None = None
    ice_password: str | None = None
    offer: ClientOffer | None = None


def join_request(
    request: JoinRequest | str,
    participant_id: str | None = None,
    role: Role | RoleName | None = None,
    outbox: Outbox | None = None,
    *,
    name: str | None = None,
    ice_username_fragment: str | None = None,
    ice_password: str | None = None,
    offer: ClientOffer | None = None,
) -> JoinRequest:
    """A :class:`JoinRequest`, or one made of the older ``join(room_id,
    participant_id, role, outbox, *, name=..., ...)`` arguments (which
    :meth:`pysfu.SFU.join` and :meth:`pysfu.workers.WorkerPool.join` still
    take)."""
    details = (name, ice_username_fragment, ice_password, offer)
    if isinstance(request, JoinRequest):
        if any(x is not None for x in (participant_id, role, outbox, *details)):
            raise TypeError("a JoinRequest comes alone")
        return request
    if participant_id is None or role is None or outbox is None:
        raise TypeError("join(room_id, participant_id, role, outbox) needs all four")
    return JoinRequest(request, participant_id, role, outbox, *details)


class Rooms(Protocol[P]):
    """Rooms, in this process or elsewhere, named by their ids.

    Errors are pysfu's own: :class:`~pysfu.errors.RoomNotFound`,
    :class:`~pysfu.errors.RoomExists`, :class:`~pysfu.errors.TooManyRooms`,
    :class:`~pysfu.errors.RoomFull`, :class:`~pysfu.errors.HostTaken`,
    :class:`~pysfu.errors.DuplicateParticipant`, and
    :class:`~pysfu.errors.WorkerFailed` where another process is involved.
    """

    @property
    def config(self) -> SFUConfig:
        """The configuration every room runs with."""
        ...

    @property
    def supports_client_offers(self) -> bool:
        """Whether :attr:`JoinRequest.offer` is supported (WHIP/WHEP)."""
        ...

    async def start(self) -> None:
        """Make the rooms ready (start worker processes, say); idempotent."""
        ...

    async def close(self) -> None:
        """Close every room (and stop whatever :meth:`start` started)."""
        ...

    async def create_room(self, options: RoomOptions, /) -> str:
        """Create a room; its id."""
        ...

    async def close_room(self, room_id: str, reason: str = "closed") -> None:
        """Close a room for everyone in it; raises ``RoomNotFound``."""
        ...

    def seats(self, room_id: str) -> RoomSeats:
        """The room's seats; raises ``RoomNotFound``."""
        ...

    async def join(self, request: JoinRequest, /) -> P:
        """Join a room as :meth:`pysfu.Room.join` does (same errors)."""
        ...

    async def leave_unless_connected(
        self, room_id: str, participant_id: str, reason: str
    ) -> bool:
        """Remove a member whose connection is not established; whether it did."""
        ...

    async def stats(self) -> SFUStats:
        """A snapshot of every room."""
        ...

    async def totals(self) -> Totals:
        """Cumulative counters since the start, departed participants included."""
        ...

    def add_listener(self, listener: RoomListener) -> Callable[[], None]:
        """Call ``listener`` with every event of every room; returns an
        unsubscribe."""
        ...
