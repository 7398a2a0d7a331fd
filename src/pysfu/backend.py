"""What :class:`~pysfu.admission.Admission` needs from the rooms it admits into.

Both :class:`pysfu.SFU` (rooms in this process) and
:class:`pysfu.workers.WorkerPool` (rooms in worker processes) are a
:class:`RoomsBackend`: they tell how a room's seats are taken, join a
participant with the ICE credentials it was granted, and remove one whose
credentials expired before its connection was established.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from .answering import ClientOffer
from .config import SFUConfig
from .ports import Outbox, Role, SessionParticipant

__all__ = [
    "RoomSeats",
    "RoomsBackend",
]

#: The kind of participant a backend's :meth:`RoomsBackend.join` returns.
P = TypeVar("P", bound=SessionParticipant, covariant=True)


@dataclass(frozen=True)
class RoomSeats:
    """Who holds a room's seats now (admitted, not yet joined, not counted)."""

    room_id: str
    max_participants: int
    has_host: bool
    #: Members in the participant role.
    participants: int


class RoomsBackend(Protocol[P]):
    """Rooms that :class:`~pysfu.admission.Admission` can admit clients into."""

    @property
    def config(self) -> SFUConfig: ...

    def seats(self, room_id: str) -> RoomSeats:
        """The room's seats; raises :class:`~pysfu.errors.RoomNotFound`."""
        ...

    async def join(
        self,
        room_id: str,
        participant_id: str,
        role: Role | str,
        outbox: Outbox,
        *,
        name: str | None = None,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        offer: ClientOffer | None = None,
    ) -> P:
        """Join a room as :meth:`pysfu.Room.join` does (same errors)."""
        ...

    async def leave_unless_connected(
        self, room_id: str, participant_id: str, reason: str
    ) -> bool:
        """Remove a member whose connection is not established; whether it did."""
        ...
