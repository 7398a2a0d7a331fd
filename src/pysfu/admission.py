"""Who may create rooms and join them: host keys and join credentials.

The join capability is the ICE password of the server's side of a
participant's connection. :meth:`Admission.admit` reserves a seat and issues
a :class:`JoinGrant` holding fresh ICE credentials and a signalling token;
the client gets them from the join backend (an HTTP API, say).
:meth:`Admission.join_with_token` redeems the grant once (single-use) when
the client presents the signalling token on its signalling channel, and
joins the room with the server's ICE agent set to exactly those
credentials. Because the server is ICE-lite and controlled (see
:class:`pysfu.IceConfig`), only a client that knows the password can
complete ICE; signalling adapters send the server's offers with the password
redacted (:func:`redact_ice_password`), so holding the signalling channel is
not enough either. The participant id is a name, not a secret: it appears
in URLs and in other participants' messages.

A grant holds its seat only until its client opens the signalling
(``pending_hold`` seconds at most, and firmly only for
:attr:`~pysfu.LimitsConfig.pending_reserve` seconds), and one client address
may hold at most :attr:`~pysfu.LimitsConfig.max_pending_per_client` grants
that wait: a client that asks for seats and never uses them cannot keep a
room full, nor fill the server's pool. A room's host sees who waits
(:meth:`Admission.waiting`, :meth:`Admission.add_waiting_listener`) and can
refuse them (:meth:`Admission.refuse`).

With :attr:`~pysfu.LimitsConfig.guest_grace`, each participant's grant
carries a rejoin credential (:attr:`JoinGrant.rejoin`). A participant that
goes without leaving on purpose (its page reloads and sends ``leave`` with
``rejoin``, its connection is lost) keeps its seat for that many seconds:
newcomers are refused ``room_full`` as if it were there, and
:meth:`Admission.admit` with that credential gives the seat back (with a
new credential: each one works once). A plain ``leave``, the grace's end or
the room's close free the seat.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, runtime_checkable

from .digests import secret_digest as _digest
from .errors import (
    CredentialError,
    CredentialExpired,
    CredentialRefused,
    CredentialUnknown,
    CredentialUsed,
    HostTaken,
    PysfuError,
    RoomFull,
    TooManyPending,
    Unauthorized,
)
from .events import ParticipantLeftEvent, RoomClosedEvent, RoomEvent
from .peer.answering import ClientOffer
from .ports import Outbox, Role, RoleName
from .rooms import JoinRequest, P, Rooms

logger = logging.getLogger(__name__)

#: How many spent grants are remembered for specific error messages.
MAX_REMEMBERED_GRANTS = 10_000
_MESSAGES: dict[type[CredentialError], str] = {
    CredentialUnknown: "no such admitted participant",
    CredentialUsed: "these credentials were already used",
    CredentialExpired: "these credentials expired",
    CredentialRefused: "the host refused this participant",
}
_DISPLACED = "another participant took the seat: the signalling did not open in time"

#: What :func:`redact_ice_password` writes instead of the password.
REDACTED = "REDACTED"
_ICE_PWD = re.compile(r"a=ice-pwd:[^\s\\\"']+")


class HostKeys:
    """The host credentials that allow creating rooms and joining as host.

    Keys are kept as SHA-256 digests and compared in constant time; they are
    never logged (``repr`` shows only how many there are).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]
        if not self._digests:
            raise ValueError("at least one host key is required")

    def check(self, presented: str | None) -> bool:
        """Whether ``presented`` is one of the keys."""
        digest = hashlib.sha256((presented or "").encode()).digest()
        found = False
        for known in self._digests:  # no early exit: same time for every key
            found |= hmac.compare_digest(digest, known)
        return found and bool(presented)

    def __repr__(self) -> str:
        return f"<HostKeys ({len(self._digests)} keys)>"


@dataclass(frozen=True)
class IceCredentials:
    """ICE username fragment and password of the server's side of a connection."""

    username_fragment: str
    password: str

    @classmethod
    def generate(cls) -> IceCredentials:
        # ice-chars are [A-Za-z0-9+/]: hex for the ufrag, base64 for 144 bits
        password = base64.b64encode(secrets.token_bytes(18)).decode()
        return cls(username_fragment=secrets.token_hex(8), password=password)

    def __repr__(self) -> str:
        ufrag = self.username_fragment
        return f"IceCredentials(username_fragment={ufrag!r}, password=...)"


@dataclass
class JoinGrant:
    """An admitted but not yet connected participant: its seat and credentials.

    ``signalling_token`` is what the client presents on its signalling
    channel to take up the grant (:meth:`Admission.join_with_token`): give it
    to the client with the ICE credentials, and nowhere else (not in a URL).
    ``redeem_by``: when the grant expires unless redeemed; ``expires_at``:
    when a redeemed grant's participant is removed unless connected.
    ``client``: the address it was issued to (for the per-client quota).
    ``firm_until``: until when no newcomer may take its seat.
    ``rejoin``: the participant's rejoin credential (with
    :attr:`~pysfu.LimitsConfig.guest_grace`, participants only; else
    ``None``): give it to the client with the others; it takes the seat
    back after the participant went (see :meth:`Admission.admit`).
    """

    participant_id: str
    room_id: str
    role: Role
    name: str
    credentials: IceCredentials
    expires_at: float
    redeem_by: float
    issued_at: float
    firm_until: float = 0.0
    client: str | None = None
    signalling_token: str = field(
        default_factory=lambda: secrets.token_urlsafe(24), repr=False
    )
    used: bool = False
    rejoin: str | None = field(default=None, repr=False)


@dataclass
class _Seat:
    """A participant's seat, for its rejoin credential (a digest): held
    while the participant is admitted or in the room, and reserved until
    ``away_until`` once it went without leaving on purpose."""

    room_id: str
    digest: bytes
    away_until: float | None = None


#: Departure reasons that free a participant's seat at once: it left on
#: purpose, or it never connected.
_FINAL_DEPARTURES = frozenset({"left", "credentials expired"})


def redact_ice_password(sdp: str, only: str | None = None) -> str:
    """Replace every ``a=ice-pwd:`` value in ``sdp`` with :data:`REDACTED`,
    or with ``only`` just those equal to it.

    A signalling adapter redacts only the join password (the capability the
    join backend handed out): after an ICE restart the server's offers carry
    fresh credentials that the client can only learn from them, over the
    signalling channel it already authenticated with its single-use token.
    """
    if only is None:
        return _ICE_PWD.sub(f"a=ice-pwd:{REDACTED}", sdp)
    return re.sub(
        rf"a=ice-pwd:{re.escape(only)}(?=[\s\\\"']|$)", f"a=ice-pwd:{REDACTED}", sdp
    )


class RedactSecrets(logging.Filter):
    """A logging filter that removes ICE passwords from log records.

    aiortc logs whole SDP descriptions at DEBUG level, ICE passwords
    included, and here those passwords are join credentials. Add it to the
    handlers of an application (``handler.addFilter(RedactSecrets())``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ice-pwd" in message:
            record.msg = redact_ice_password(message)
            record.args = None
        return True


@runtime_checkable
class HasRooms(Protocol[P]):
    """Something with a :class:`~pysfu.rooms.Rooms` view: a :class:`pysfu.SFU`
    (:meth:`~pysfu.SFU.as_rooms`)."""

    def as_rooms(self) -> Rooms[P]: ...


class Admission(Generic[P]):
    """Admits participants into any :class:`~pysfu.rooms.Rooms`: those of an
    :class:`~pysfu.SFU` (pass the SFU or its :meth:`~pysfu.SFU.as_rooms`) or
    of a :class:`~pysfu.workers.WorkerPool`.

    - :meth:`admit` checks the room rules (host credential for the host role,
      one host, ``max_participants`` counting seats already granted), then
      reserves a seat and issues single-use ICE credentials that expire after
      ``credential_ttl`` seconds.
    - :meth:`join_with_token` (or :meth:`join`, for callers that hold the
      grant themselves) redeems them and joins the room. A grant not redeemed
      within ``pending_hold`` seconds expires; if the connection is not
      established ``credential_ttl`` seconds after the grant was issued, the
      participant is removed and its seat freed.
    """

    def __init__(
        self,
        rooms: Rooms[P] | HasRooms[P],
        *,
        credential_ttl: float = 30.0,
        pending_hold: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: The rooms admitted into.
        self.rooms: Rooms[P] = (
            rooms.as_rooms() if isinstance(rooms, HasRooms) else rooms
        )
        self.credential_ttl = credential_ttl
        self.pending_hold = min(pending_hold, credential_ttl)
        self._clock = clock
        self._grants: dict[str, JoinGrant] = {}
        # Recently spent grants, so a late or repeated attempt gets a specific
        # error rather than "unknown"; bounded, oldest forgotten first.
        self._spent: OrderedDict[str, tuple[type[CredentialError], str]] = OrderedDict()
        self._waiting_listeners: list[Callable[[str], None]] = []
        # Participant ids by a digest of their ICE password, for clients that
        # present only the password (WHIP/WHEP bearer tokens); bounded alike.
        self._by_password: OrderedDict[bytes, str] = OrderedDict()
        self._expiries: set[asyncio.Task[None]] = set()
        # Rejoin seats by participant id (guest grace); bounded, oldest first.
        self._seats: OrderedDict[str, _Seat] = OrderedDict()
        self.rooms.add_listener(self._room_event)

    def admit(
        self,
        room_id: str,
        role: Role | RoleName = Role.PARTICIPANT,
        *,
        name: str | None = None,
        host_authorized: bool = False,
        client: str | None = None,
        rejoin: str | None = None,
        rejoinable: bool = True,
    ) -> JoinGrant:
        """Reserve a seat in a room and issue its credentials.

        ``client``: the requester's address, for the per-client quota on
        grants that wait (``None``: not counted per client). ``rejoin``: a
        participant's rejoin credential (:attr:`JoinGrant.rejoin` of its last
        grant): the seat that participant keeps during its
        :attr:`~pysfu.LimitsConfig.guest_grace` is this admission's. A
        credential that is not valid (spent, its grace over, another room)
        is ignored: the request is a newcomer's. ``rejoinable=False``: no
        rejoin credential, no seat kept after the participant goes (for
        clients that cannot come back with one, such as WHIP's).

        Raises RoomNotFound, Unauthorized, HostTaken, RoomFull or
        TooManyPending.
        """
        role = Role(role)
        room = self.rooms.seats(room_id)
        self._purge()
        limits = self.rooms.config.limits
        waiting = [g for g in self._grants.values() if not g.used]
        if len(waiting) >= limits.max_pending:
            raise TooManyPending(f"{limits.max_pending} participants are waiting")
        if client is not None:
            mine = sum(1 for g in waiting if g.client == client)
            if mine >= limits.max_pending_per_client:
                raise TooManyPending(
                    f"{mine} participants admitted from {client} are waiting to "
                    "connect; open their signalling first"
                )
        pending = [
            g for g in self._grants.values() if g.room_id == room.room_id and not g.used
        ]
        if role is Role.HOST:
            if not host_authorized:
                raise Unauthorized("joining as host needs a host key")
            if room.has_host or any(g.role is Role.HOST for g in pending):
                raise HostTaken(f"room {room.room_id} already has a host")
        now = self._clock()
        firm_until = now + self.rooms.config.limits.pending_reserve
        if role is Role.PARTICIPANT:
            returning = self._returning(room.room_id, rejoin)
            if returning is not None:
                del self._seats[returning]
                logger.info("room %s: a participant came back to its seat", room_id)
                firm_until = now + self.pending_hold  # its seat: nobody displaces it
            seats = (
                room.participants
                + sum(1 for g in pending if g.role is Role.PARTICIPANT)
                + self.reserved_seats(room.room_id)
            )
            if seats >= room.max_participants:
                self._displace(pending, client, room.room_id)
                # a seat taken over is held for the whole hold: otherwise a
                # client asking again and again takes it back before it is used
                firm_until = now + self.pending_hold
        participant_id = "p-" + secrets.token_urlsafe(12)
        grant = JoinGrant(
            participant_id=participant_id,
            room_id=room.room_id,
            role=role,
            name=(name or "")[:64] or participant_id,
            credentials=IceCredentials.generate(),
            expires_at=now + self.credential_ttl,
            redeem_by=now + self.pending_hold,
            issued_at=now,
            firm_until=firm_until,
            client=client,
        )
        if role is Role.PARTICIPANT and rejoinable and limits.guest_grace > 0:
            grant.rejoin = secrets.token_urlsafe(24)
            self._seats[participant_id] = _Seat(room.room_id, _digest(grant.rejoin))
            while len(self._seats) > MAX_REMEMBERED_GRANTS:
                self._seats.popitem(last=False)
        self._grants[participant_id] = grant
        self._by_password[_digest(grant.credentials.password)] = participant_id
        while len(self._by_password) > MAX_REMEMBERED_GRANTS + len(self._grants):
            self._by_password.popitem(last=False)
        # no participant id at INFO: ids are public, but need not be broadcast
        logger.info("admitted a %s into room %s", role.value, room.room_id)
        self._waiting_changed(room.room_id)
        return grant

    def reserved_seats(self, room_id: str) -> int:
        """Seats of ``room_id`` held for participants that went without
        leaving, within their :attr:`~pysfu.LimitsConfig.guest_grace`."""
        now = self._clock()
        return sum(
            1
            for seat in self._seats.values()
            if seat.room_id == room_id
            and seat.away_until is not None
            and now < seat.away_until
        )

    def seat_holder(self, room_id: str, rejoin: str | None) -> str | None:
        """The participant of ``room_id`` that still holds the seat whose
        rejoin credential ``rejoin`` is (its session has not ended: a page
        that vanished without a ``leave``), if any.

        For an application that removes that session first (with a reason
        other than ``"left"``: its seat is then kept for :meth:`admit` with
        the same credential), as the ``pysfu serve`` app does.
        """
        if not rejoin:
            return None
        digest = _digest(rejoin)
        for participant_id, seat in self._seats.items():
            grant = self._grants.get(participant_id)
            if (
                seat.room_id == room_id
                and seat.away_until is None
                and (grant is None or grant.used)
                and hmac.compare_digest(seat.digest, digest)
            ):
                return participant_id
        return None

    def _returning(self, room_id: str, rejoin: str | None) -> str | None:
        """The participant whose reserved seat in ``room_id`` ``rejoin``
        takes back, if it is valid."""
        if not rejoin:
            return None
        digest, now = _digest(rejoin), self._clock()
        for participant_id, seat in self._seats.items():
            if (
                seat.room_id == room_id
                and seat.away_until is not None
                and now < seat.away_until
                and hmac.compare_digest(seat.digest, digest)
            ):
                return participant_id
        return None

    def _room_event(self, event: RoomEvent) -> None:
        """Reserve the seat of a participant that went without leaving;
        forget the seats of a room that closed."""
        if isinstance(event, RoomClosedEvent):
            for participant_id, held in list(self._seats.items()):
                if held.room_id == event.room_id:
                    del self._seats[participant_id]
        elif isinstance(event, ParticipantLeftEvent):
            seat = self._seats.get(event.participant_id)
            if seat is None:
                return
            grace = self.rooms.config.limits.guest_grace
            if event.reason in _FINAL_DEPARTURES or grace <= 0:
                del self._seats[event.participant_id]
                return
            seat.away_until = self._clock() + grace
            logger.info(
                "room %s: a participant went (%s); its seat is kept %g s",
                event.room_id,
                event.reason,
                grace,
            )

    def _displace(
        self, pending: list[JoinGrant], client: str | None, room_id: str
    ) -> None:
        """Free a seat held by a grant that waited too long, or raise RoomFull.

        Only a grant from another client, past its ``firm_until``
        (``pending_reserve`` after it was issued): a client cannot displace
        its own grants, and a fresh grant has time to open its signalling.
        """
        now = self._clock()
        stale = [
            g
            for g in pending
            if g.role is Role.PARTICIPANT and g.client != client and now >= g.firm_until
        ]
        if not stale:
            raise RoomFull(f"room {room_id} is full")
        oldest = min(stale, key=lambda g: g.issued_at)
        self._forget(oldest.participant_id, CredentialRefused, _DISPLACED)
        logger.info("room %s: a participant that did not connect gave way", room_id)

    def redeem(self, participant_id: str) -> JoinGrant:
        """Use a grant, once.

        Raises CredentialUnknown, CredentialUsed, CredentialExpired or
        CredentialRefused.
        """
        self._purge()
        grant = self._grants.get(participant_id)
        if grant is None:
            raise self._spent_error(participant_id, CredentialUnknown)
        if grant.used:
            raise CredentialUsed(_MESSAGES[CredentialUsed])
        grant.used = True
        self._waiting_changed(grant.room_id)
        return grant

    def grant_for_password(self, password: str) -> JoinGrant:
        """The unused grant whose ICE password this is (not redeemed yet).

        For clients that present only the password, such as a WHIP client's
        bearer token. Raises CredentialUnknown, CredentialUsed,
        CredentialExpired or CredentialRefused.
        """
        self._purge()
        participant_id = self._by_password.get(_digest(password))
        if participant_id is None:
            raise CredentialUnknown(_MESSAGES[CredentialUnknown])
        grant = self._grants.get(participant_id)
        if grant is None or grant.used:
            raise self._spent_error(participant_id, CredentialUsed)
        return grant

    async def join_with_token(
        self, participant_id: str, token: str, outbox: Outbox
    ) -> P:
        """Redeem the grant whose signalling token ``token`` is, and join.

        What a signalling adapter calls when a client opens its session: the
        participant id alone (public: it is in URLs and in other members'
        messages) admits nobody. A wrong token leaves the grant untouched and
        raises CredentialUnknown, as for an id never issued; otherwise as
        :meth:`join`.
        """
        self._purge()
        grant = self._grants.get(participant_id)
        if grant is None:
            raise self._spent_error(participant_id, CredentialUnknown)
        if not hmac.compare_digest(grant.signalling_token.encode(), token.encode()):
            raise CredentialUnknown(_MESSAGES[CredentialUnknown])
        return await self.join(participant_id, outbox)

    async def join(
        self, participant_id: str, outbox: Outbox, *, offer: ClientOffer | None = None
    ) -> P:
        """Redeem a grant and join its room with the granted ICE credentials.

        For callers that authenticated the client themselves (the WHIP
        adapter found the grant by its ICE password); signalling adapters
        use :meth:`join_with_token`. ``offer``: a WHIP/WHEP client's offer
        (see :meth:`pysfu.Room.join`; in-process rooms only).
        """
        grant = self.redeem(participant_id)
        participant = await self.rooms.join(
            JoinRequest(
                grant.room_id,
                grant.participant_id,
                grant.role,
                outbox,
                name=grant.name,
                ice_username_fragment=grant.credentials.username_fragment,
                ice_password=grant.credentials.password,
                offer=offer,
            )
        )
        delay = max(grant.expires_at - self._clock(), 0.0)
        # ids only: the timer must not keep a departed participant alive
        asyncio.get_running_loop().call_later(
            delay, self._expire, grant.room_id, grant.participant_id
        )
        return participant

    @property
    def sfu(self) -> Rooms[P]:
        """Deprecated name of :attr:`rooms`."""
        warnings.warn(
            "Admission.sfu is now Admission.rooms", DeprecationWarning, stacklevel=2
        )
        return self.rooms

    def grant(self, participant_id: str) -> JoinGrant | None:
        """The grant issued for ``participant_id``, redeemed or not, while
        it is remembered (until it expires)."""
        return self._grants.get(participant_id)

    def waiting(self, room_id: str) -> list[JoinGrant]:
        """The room's admitted participants that have not opened their
        signalling yet, oldest first (what a host may :meth:`refuse`)."""
        now = self._clock()  # no purge: listeners call this while it purges
        grants = [
            g
            for g in self._grants.values()
            if g.room_id == room_id and not g.used and now < g.redeem_by
        ]
        return sorted(grants, key=lambda g: g.issued_at)

    def refuse(self, room_id: str, participant_id: str) -> bool:
        """Withdraw a waiting participant's grant (the host's decision).

        Its seat is freed at once; the client gets ``credential_refused``
        when it opens its signalling. Returns whether there was such a grant
        (unredeemed, in this room).
        """
        grant = self._grants.get(participant_id)
        if grant is None or grant.used or grant.room_id != room_id:
            return False
        self._forget(participant_id, CredentialRefused, _MESSAGES[CredentialRefused])
        logger.info("room %s: the host refused a waiting participant", room_id)
        return True

    def add_waiting_listener(
        self, listener: Callable[[str], None]
    ) -> Callable[[], None]:
        """Call ``listener(room_id)`` whenever who waits in that room changes
        (see :meth:`waiting`); returns a function that removes the listener.

        Listeners are called synchronously and must not raise.
        """
        self._waiting_listeners.append(listener)
        return lambda: self._waiting_listeners.remove(listener)

    def _waiting_changed(self, room_id: str) -> None:
        for listener in list(self._waiting_listeners):
            try:
                listener(room_id)
            except Exception:  # one broken listener must not break admission
                logger.exception("waiting listener failed")

    def _spent_error(
        self, participant_id: str, default: type[CredentialError]
    ) -> CredentialError:
        why, message = self._spent.get(participant_id, (default, _MESSAGES[default]))
        return why(message)

    def _forget(
        self,
        participant_id: str,
        why: type[CredentialError],
        message: str | None = None,
    ) -> None:
        grant = self._grants.pop(participant_id, None)
        self._spent[participant_id] = (why, message or _MESSAGES[why])
        while len(self._spent) > MAX_REMEMBERED_GRANTS:
            self._spent.popitem(last=False)
        if grant is not None and not grant.used:
            self._seats.pop(participant_id, None)  # it never took its seat
            self._waiting_changed(grant.room_id)

    def _expire(self, room_id: str, participant_id: str) -> None:
        self._forget(participant_id, CredentialUsed)
        task = asyncio.get_running_loop().create_task(
            self._remove_unconnected(room_id, participant_id)
        )
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    async def _remove_unconnected(self, room_id: str, participant_id: str) -> None:
        try:
            removed = await self.rooms.leave_unless_connected(
                room_id, participant_id, "credentials expired"
            )
        except PysfuError:  # the worker holding the room is gone: so is the seat
            logger.debug("could not expire %s", participant_id, exc_info=True)
            return
        if removed:
            logger.info("credentials of %s expired before it connected", participant_id)

    def _purge(self) -> None:
        now = self._clock()
        for participant_id, grant in list(self._grants.items()):
            if not grant.used and now >= grant.redeem_by:
                self._forget(participant_id, CredentialExpired)
        for participant_id, seat in list(self._seats.items()):
            if seat.away_until is not None and now >= seat.away_until:
                del self._seats[participant_id]  # its grace is over
