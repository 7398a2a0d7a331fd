r"""The types the core is written against and adapters implement.

The core (rooms, participants, the worker pool) does no signalling I/O: it
hands every message for a client to an :data:`Outbox`, and an adapter drives
a :class:`SessionParticipant` with what the client sends. Both are defined
here, below :mod:`pysfu.signalling`, so that the core never imports an
adapter package.

Inside the core, a room's members and helpers (participants, their data
channels, the speaker monitor) reach their room through a :class:`RoomPort`,
and the room sees them as :class:`Member`\ s: both are defined here, so that
neither side imports the other's module.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from .errors import SignallingError
from .events import RoomEvent
from .messages import ClientMessage, ServerMessage

if TYPE_CHECKING:
    from .forwarding import Forwarder
    from .stats import SubscriptionStats

__all__ = [
    "Member",
    "Outbox",
    "Role",
    "RoleName",
    "RoomPort",
    "SessionParticipant",
    "SignallingTarget",
]

#: Called by the core with each message for one client. It should not block
#: for long (queue the message if the transport is slow); if it raises, the
#: message is dropped and the participant carries on.
Outbox = Callable[[ServerMessage], Awaitable[None]]


class SignallingTarget(Protocol):
    """What :func:`pysfu.signalling.deliver_json` needs: a
    :class:`pysfu.Participant`, or a :class:`pysfu.workers.RemoteParticipant`
    whose connection is in a worker."""

    async def within_rate_limit(self) -> bool: ...
    async def refuse(self, error: SignallingError) -> None: ...
    async def handle_unlimited(self, message: ClientMessage) -> None: ...


class SessionParticipant(SignallingTarget, Protocol):
    """What an adapter needs for a whole session: a :class:`pysfu.Participant`
    or a :class:`pysfu.workers.RemoteParticipant`."""

    @property
    def id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    async def leave(self, reason: str = "left") -> None: ...
    async def wait_closed(self) -> None: ...
    async def fetch_pending_offer(self) -> str | None: ...


class Role(str, enum.Enum):
    """A participant's role in its room."""

    HOST = "host"
    PARTICIPANT = "participant"


#: A role as a string, for callers that do not import :class:`Role`: a
#: misspelled one is a type error.
RoleName = Literal["host", "participant"]


class Member(Protocol):
    """A room member as the room's helpers see it (a :class:`pysfu.Participant`)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def closed(self) -> bool: ...
    async def send(self, message: ServerMessage) -> None: ...


#: The members' type a room port works with (:class:`pysfu.Participant`).
M = TypeVar("M", bound=Member)


class RoomPort(Protocol[M]):
    """What a room's members and helpers may ask of their room (a
    :class:`pysfu.Room`, a ``RoomPort[Participant]``); they call nothing else
    on it."""

    @property
    def id(self) -> str: ...
    @property
    def members(self) -> Mapping[str, M]: ...
    @property
    def host(self) -> M | None: ...

    def eligible(self, publisher: M, subscriber: M) -> bool:
        """Whether ``subscriber`` receives what ``publisher`` publishes."""

    def publish(self, publisher: M, forwarder: Forwarder) -> None:
        """A member's track is ready (its codecs are known): forward it."""

    def relay_data(self, sender: M, data: str | bytes) -> tuple[str, ...]:
        """Relay a data channel message of ``sender``; returns who got it."""

    def emit(self, event: RoomEvent) -> None:
        """Tell the room's listeners."""

    def retire(self, stats: SubscriptionStats) -> None:
        """Count a subscription that ended into the totals."""

    async def remove(self, participant: M, reason: str = "left") -> None:
        """Take a member out of the room (it left, or its connection failed)."""

    async def control_recording(self, participant: M, on: bool) -> None:
        """A member's ``record`` message; raises :class:`SignallingError`."""
