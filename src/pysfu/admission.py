"""Who may create rooms and join them: host keys and join credentials.

The join capability is the ICE password of the server's side of a
participant's connection. :meth:`Admission.admit` reserves a seat and issues
a :class:`JoinGrant` holding fresh ICE credentials; the client gets them from
the join backend (an HTTP API, say). :meth:`Admission.join` redeems the grant
once (single-use), before it expires, and joins the room with the server's
ICE agent set to exactly those credentials. Because the server is ICE-lite
and controlled (see :class:`pysfu.IceConfig`), only a client that knows the
password can complete ICE; signalling adapters send the server's offers with
the password redacted (:func:`redact_ice_password`), so holding the
signalling channel is not enough either.
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
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic

from .answering import ClientOffer
from .backend import P, RoomsBackend
from .digests import secret_digest as _digest
from .errors import (
    CredentialError,
    CredentialExpired,
    CredentialUnknown,
    CredentialUsed,
    HostTaken,
    PysfuError,
    RoomFull,
    TooManyPending,
    Unauthorized,
)
from .participant import Role
from .ports import Outbox

logger = logging.getLogger(__name__)

#: How many spent grants are remembered for specific error messages.
MAX_REMEMBERED_GRANTS = 10_000
_MESSAGES: dict[type[CredentialError], str] = {
    CredentialUnknown: "no such admitted participant",
    CredentialUsed: "these credentials were already used",
    CredentialExpired: "these credentials expired",
}

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
    """An admitted but not yet connected participant: its seat and credentials."""

    participant_id: str
    room_id: str
    role: Role
    name: str
    credentials: IceCredentials
    expires_at: float
    used: bool = False


def redact_ice_password(sdp: str) -> str:
    """Replace every ``a=ice-pwd:`` value in ``sdp`` with :data:`REDACTED`."""
    return _ICE_PWD.sub(f"a=ice-pwd:{REDACTED}", sdp)


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


class Admission(Generic[P]):
    """Admits participants into the rooms of an :class:`~pysfu.SFU` or of a
    :class:`~pysfu.workers.WorkerPool` (any :class:`~pysfu.backend.RoomsBackend`).

    - :meth:`admit` checks the room rules (host credential for the host role,
      one host, ``max_participants`` counting seats already granted), then
      reserves a seat and issues single-use ICE credentials that expire after
      ``credential_ttl`` seconds.
    - :meth:`join` redeems them and joins the room. If the connection is not
      established when the credentials expire, the participant is removed and
      its seat freed.
    """

    def __init__(
        self,
        sfu: RoomsBackend[P],
        *,
        credential_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sfu = sfu
        self.credential_ttl = credential_ttl
        self._clock = clock
        self._grants: dict[str, JoinGrant] = {}
        # Recently spent grants, so a late or repeated attempt gets a specific
        # error rather than "unknown"; bounded, oldest forgotten first.
        self._spent: OrderedDict[str, type[CredentialError]] = OrderedDict()
        # Participant ids by a digest of their ICE password, for clients that
        # present only the password (WHIP/WHEP bearer tokens); bounded alike.
        self._by_password: OrderedDict[bytes, str] = OrderedDict()
        self._expiries: set[asyncio.Task[None]] = set()

    def admit(
        self,
        room_id: str,
        role: Role | str = Role.PARTICIPANT,
        *,
        name: str | None = None,
        host_authorized: bool = False,
    ) -> JoinGrant:
        """Reserve a seat in a room and issue its credentials.

        Raises RoomNotFound, Unauthorized, HostTaken or RoomFull.
        """
        role = Role(role)
        room = self.sfu.seats(room_id)
        self._purge()
        limit = self.sfu.config.limits.max_pending
        if sum(1 for g in self._grants.values() if not g.used) >= limit:
            raise TooManyPending(f"{limit} participants are waiting to connect")
        pending = [
            g for g in self._grants.values() if g.room_id == room.room_id and not g.used
        ]
        if role is Role.HOST:
            if not host_authorized:
                raise Unauthorized("joining as host needs a host key")
            if room.has_host or any(g.role is Role.HOST for g in pending):
                raise HostTaken(f"room {room.room_id} already has a host")
        else:
            seats = room.participants + sum(
                1 for g in pending if g.role is Role.PARTICIPANT
            )
            if seats >= room.max_participants:
                raise RoomFull(f"room {room.room_id} is full")
        participant_id = "p-" + secrets.token_urlsafe(12)
        grant = JoinGrant(
            participant_id=participant_id,
            room_id=room.room_id,
            role=role,
            name=(name or "")[:64] or participant_id,
            credentials=IceCredentials.generate(),
            expires_at=self._clock() + self.credential_ttl,
        )
        self._grants[participant_id] = grant
        self._by_password[_digest(grant.credentials.password)] = participant_id
        while len(self._by_password) > MAX_REMEMBERED_GRANTS + len(self._grants):
            self._by_password.popitem(last=False)
        logger.info(
            "admitted %s as %s into room %s", participant_id, role.value, room.room_id
        )
        return grant

    def redeem(self, participant_id: str) -> JoinGrant:
        """Use a grant, once.

        Raises CredentialUnknown, CredentialUsed or CredentialExpired.
        """
        self._purge()
        grant = self._grants.get(participant_id)
        if grant is None:
            spent = self._spent.get(participant_id, CredentialUnknown)
            raise spent(_MESSAGES[spent])
        if grant.used:
            raise CredentialUsed(_MESSAGES[CredentialUsed])
        grant.used = True
        return grant

    def grant_for_password(self, password: str) -> JoinGrant:
        """The unused grant whose ICE password this is (not redeemed yet).

        For clients that present only the password, such as a WHIP client's
        bearer token. Raises CredentialUnknown, CredentialUsed or
        CredentialExpired.
        """
        self._purge()
        participant_id = self._by_password.get(_digest(password))
        if participant_id is None:
            raise CredentialUnknown(_MESSAGES[CredentialUnknown])
        grant = self._grants.get(participant_id)
        if grant is None or grant.used:
            spent = self._spent.get(participant_id, CredentialUsed)
            raise spent(_MESSAGES[spent])
        return grant

    async def join(
        self, participant_id: str, outbox: Outbox, *, offer: ClientOffer | None = None
    ) -> P:
        """Redeem a grant and join its room with the granted ICE credentials.

        ``offer``: a WHIP/WHEP client's offer (see :meth:`pysfu.Room.join`;
        in-process rooms only).
        """
        grant = self.redeem(participant_id)
        participant = await self.sfu.join(
            grant.room_id,
            grant.participant_id,
            grant.role,
            outbox,
            ice_username_fragment=grant.credentials.username_fragment,
            ice_password=grant.credentials.password,
            name=grant.name,
            offer=offer,
        )
        delay = max(grant.expires_at - self._clock(), 0.0)
        # ids only: the timer must not keep a departed participant alive
        asyncio.get_running_loop().call_later(
            delay, self._expire, grant.room_id, grant.participant_id
        )
        return participant

    def _forget(self, participant_id: str, why: type[CredentialError]) -> None:
        self._grants.pop(participant_id, None)
        self._spent[participant_id] = why
        while len(self._spent) > MAX_REMEMBERED_GRANTS:
            self._spent.popitem(last=False)

    def _expire(self, room_id: str, participant_id: str) -> None:
        self._forget(participant_id, CredentialUsed)
        task = asyncio.get_running_loop().create_task(
            self._remove_unconnected(room_id, participant_id)
        )
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    async def _remove_unconnected(self, room_id: str, participant_id: str) -> None:
        try:
            removed = await self.sfu.leave_unless_connected(
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
            if not grant.used and now >= grant.expires_at:
                self._forget(participant_id, CredentialExpired)
