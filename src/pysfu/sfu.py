"""The in-process registry of rooms: :class:`SFU`, and its :class:`LocalRooms`
view, the in-process implementation of :class:`pysfu.rooms.Rooms`."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from ._aiortc import register_passthrough_codecs, register_transport_cc
from .config import SFUConfig
from .datachannel import DataFilter
from .errors import RoomExists, RoomNotFound, TooManyRooms
from .events import RoomEvent
from .participant import Participant
from .peer.answering import ClientOffer
from .ports import Outbox, Role, RoleName
from .room import EligibilityPolicy, Room, RoomListener, everyone_else
from .rooms import JoinRequest, RoomOptions, RoomSeats, join_request
from .stats import REMOVAL_REASONS, ParticipantStats, SFUStats, Totals

__all__ = ["SFU", "LocalRooms"]

logger = logging.getLogger(__name__)


class SFU:
    """The registry of rooms: creates, finds and closes them.

    One ``SFU`` per process is typical; its :class:`~pysfu.SFUConfig` applies
    to every room. Its methods are those of in-process code (a synchronous
    :meth:`create_room` that returns the :class:`~pysfu.Room`);
    :meth:`as_rooms` is the same SFU as a :class:`pysfu.rooms.Rooms`, the API
    that a :class:`~pysfu.workers.WorkerPool` has too.
    """

    def __init__(self, config: SFUConfig | None = None) -> None:
        self.config = config or SFUConfig()
        self.rooms: dict[str, Room] = {}
        #: Counters of participants that left; see :meth:`totals`.
        self.retired = Totals()
        self._sweeper: asyncio.Task[None] | None = None
        # when each room was last seen without members (or without its host,
        # when it needs one), for the idle expiry
        self._vacant_since: dict[str, float] = {}
        self._listeners: list[RoomListener] = []
        self._rooms_view: LocalRooms | None = None
        register_passthrough_codecs(self.config.passthrough_codecs)
        if self.config.forwarding.transport_cc:
            register_transport_cc()

    def as_rooms(self) -> LocalRooms:
        """This SFU as a :class:`pysfu.rooms.Rooms` (always the same object)."""
        if self._rooms_view is None:
            self._rooms_view = LocalRooms(self)
        return self._rooms_view

    def create_room(
        self,
        room_id: str | None = None,
        *,
        max_participants: int = 1,
        eligibility: EligibilityPolicy = everyone_else,
        close_when_host_leaves: bool = True,
        video_codecs: tuple[str, ...] | None = None,
        data_filter: DataFilter[Participant] | None = None,
    ) -> Room:
        """Create a room. ``room_id`` defaults to a random URL-safe token.

        ``video_codecs`` restricts and orders the codecs publishers may use
        (e.g. ``("H264",)``), like Janus' ``videocodec`` room setting.
        ``data_filter`` moderates data channel messages (:attr:`Room.data_filter`).
        """
        if room_id is not None and room_id in self.rooms:  # first: the truer answer
            raise RoomExists(f"room {room_id} exists")
        if len(self.rooms) >= self.config.limits.max_rooms:
            raise TooManyRooms(f"this server holds {len(self.rooms)} rooms already")
        if room_id is None:
            room_id = secrets.token_urlsafe(12)
        if room_id in self.rooms:
            raise RoomExists(f"room {room_id} exists")
        room = Room(
            room_id,
            sfu=self,
            max_participants=max_participants,
            eligibility=eligibility,
            close_when_host_leaves=close_when_host_leaves,
            video_codecs=video_codecs,
            data_filter=data_filter,
        )
        self.rooms[room_id] = room
        room.add_listener(self._emit)
        self._start_sweeper()
        return room

    def _start_sweeper(self) -> None:
        timeout = self.config.limits.room_idle_timeout
        if timeout is None or (self._sweeper is not None and not self._sweeper.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: the next create_room in one starts it
            return
        self._sweeper = loop.create_task(self._sweep_idle_rooms(timeout))

    def _idle_for(self, room: Room, now: float) -> float:
        """Seconds ``room`` has been without members (or without its host,
        when it closes as its host leaves), as far as sweeps saw; 0 if not."""
        vacant = not room.members or (room.close_when_host_leaves and not room.host)
        if not vacant:
            self._vacant_since.pop(room.id, None)
            return 0.0
        return now - self._vacant_since.setdefault(room.id, now)

    async def _sweep_idle_rooms(self, timeout: float) -> None:
        """Close rooms idle for ``timeout`` seconds; ends when no room is left."""
        loop = asyncio.get_running_loop()
        interval = min(max(timeout / 4, 0.1), 5.0)
        for room in self.rooms.values():
            self._idle_for(room, loop.time())
        while self.rooms:
            await asyncio.sleep(interval)
            for room in list(self.rooms.values()):
                if self._idle_for(room, loop.time()) >= timeout and not room.closed:
                    logger.info("room %s closed: idle for %.0f s", room.id, timeout)
                    try:
                        await room.close("idle")
                    except Exception:  # the sweep goes on for the other rooms
                        logger.exception("closing idle room %s failed", room.id)

    def get_room(self, room_id: str) -> Room:
        """The room with that id; raises :class:`RoomNotFound`."""
        try:
            return self.rooms[room_id]
        except KeyError:
            raise RoomNotFound(f"no room {room_id}") from None

    async def close_room(self, room_id: str, reason: str = "closed") -> None:
        """Close the room with that id; raises :class:`RoomNotFound`."""
        await self.get_room(room_id).close(reason)

    def _open_room(self, room_id: str) -> Room:
        """The room with that id unless it is closing: a room whose
        :meth:`Room.close` is under way stays in :attr:`rooms` until its
        members are told, but admits nobody (the same error as once it is
        gone)."""
        room = self.get_room(room_id)
        if room.closed:
            raise RoomNotFound(f"no room {room_id} (it is closing)")
        return room

    def seats(self, room_id: str) -> RoomSeats:
        """Who holds a room's seats; raises :class:`RoomNotFound` (also for
        a room that is closing)."""
        room = self._open_room(room_id)
        return RoomSeats(
            room_id=room.id,
            max_participants=room.max_participants,
            has_host=room.host is not None,
            participants=len(room.participants),
            video_codecs=room.video_codecs,
        )

    async def join(
        self,
        request: JoinRequest | str,
        participant_id: str | None = None,
        role: Role | RoleName | None = None,
        outbox: Outbox | None = None,
        *,
        name: str | None = None,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        offer: ClientOffer | None = None,
    ) -> Participant:
        """:meth:`Room.join` on the request's room (or :class:`RoomNotFound`,
        also for a room that is closing).

        Takes a :class:`~pysfu.rooms.JoinRequest`, or the arguments of
        :meth:`Room.join` after the room's id (``name``, the ICE credentials
        and ``offer`` as keywords).
        """
        request = join_request(
            request,
            participant_id,
            role,
            outbox,
            name=name,
            ice_username_fragment=ice_username_fragment,
            ice_password=ice_password,
            offer=offer,
        )
        return await self._open_room(request.room_id).join(
            request.participant_id,
            request.role,
            request.outbox,
            ice_username_fragment=request.ice_username_fragment,
            ice_password=request.ice_password,
            name=request.name,
            offer=request.offer,
        )

    async def leave_unless_connected(
        self, room_id: str, participant_id: str, reason: str
    ) -> bool:
        """Remove a member whose connection is not established; whether it did."""
        room = self.rooms.get(room_id)
        member = room.members.get(participant_id) if room is not None else None
        return member is not None and await member.leave_unless_connected(reason)

    def add_listener(self, listener: RoomListener) -> Callable[[], None]:
        """Call ``listener`` with every event of every room; returns an
        unsubscribe (:meth:`Room.add_listener` listens to one room)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: RoomEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("SFU listener failed on %s", event)

    async def close(self) -> None:
        """Close every room."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for room in list(self.rooms.values()):
            await room.close("server shutting down")

    def stats(self) -> SFUStats:
        """A snapshot of the counters of every room."""
        return SFUStats.of(self)

    def totals(self) -> Totals:
        """Cumulative counters since the SFU started, departed participants included."""
        return self.retired.plus_live(self.stats())

    # what its rooms tell it (see pysfu.room.RoomRegistry)

    def record_departure(self, stats: ParticipantStats, reason: str = "left") -> None:
        """Fold a departing member's counters into :attr:`retired` (and
        count a removal, see :data:`pysfu.stats.REMOVAL_REASONS`)."""
        self.retired.participants_left += 1
        if reason in REMOVAL_REASONS:
            removed = self.retired.participants_removed
            removed[reason] = removed.get(reason, 0) + 1
        self.retired.add_participant(stats)

    def room_closed(self, room: Room) -> None:
        """Forget a room that has closed (called by the room)."""
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]
            self._vacant_since.pop(room.id, None)


class LocalRooms:
    """An :class:`SFU` as a :class:`pysfu.rooms.Rooms`: what
    :class:`~pysfu.admission.Admission`, the adapters and the metrics
    collector use, as they would a :class:`~pysfu.workers.WorkerPool`.
    Get it with :meth:`SFU.as_rooms`."""

    def __init__(self, sfu: SFU) -> None:
        self.sfu = sfu

    @property
    def config(self) -> SFUConfig:
        """The SFU's configuration."""
        return self.sfu.config

    @property
    def supports_client_offers(self) -> bool:
        """Always: in-process rooms answer WHIP/WHEP offers."""
        return True

    async def start(self) -> None:
        """Nothing to start: an SFU is ready once made."""

    async def close(self) -> None:
        """Close every room (:meth:`SFU.close`)."""
        await self.sfu.close()

    async def create_room(self, options: RoomOptions, /) -> str:
        """:meth:`SFU.create_room` with ``options``; the room's id."""
        room = self.sfu.create_room(
            options.room_id,
            max_participants=options.max_participants,
            eligibility=options.eligibility or everyone_else,
            close_when_host_leaves=options.close_when_host_leaves,
            video_codecs=options.video_codecs,
            data_filter=options.data_filter,
        )
        return room.id

    async def close_room(self, room_id: str, reason: str = "closed") -> None:
        """:meth:`SFU.close_room`."""
        await self.sfu.close_room(room_id, reason)

    def seats(self, room_id: str) -> RoomSeats:
        """:meth:`SFU.seats`."""
        return self.sfu.seats(room_id)

    async def join(self, request: JoinRequest, /) -> Participant:
        """:meth:`SFU.join`."""
        return await self.sfu.join(request)

    async def leave_unless_connected(
        self, room_id: str, participant_id: str, reason: str
    ) -> bool:
        """:meth:`SFU.leave_unless_connected`."""
        return await self.sfu.leave_unless_connected(room_id, participant_id, reason)

    async def stats(self) -> SFUStats:
        """:meth:`SFU.stats`."""
        return self.sfu.stats()

    async def totals(self) -> Totals:
        """:meth:`SFU.totals`."""
        return self.sfu.totals()

    def add_listener(self, listener: RoomListener) -> Callable[[], None]:
        """:meth:`SFU.add_listener`."""
        return self.sfu.add_listener(listener)
