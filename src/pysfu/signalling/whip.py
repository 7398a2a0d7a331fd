"""WHIP (RFC 9725) and WHEP signalling for aiohttp (``pip install pysfu[aiohttp]``).

A WHIP client publishes into a room, a WHEP client watches one; each is an
ordinary :class:`~pysfu.Participant` of the room (counted against its
``max_participants``), whose session is fixed by the client's one offer
(:mod:`pysfu.answering`). The HTTP resources:

- ``POST /whip/{room}`` and ``POST /whep/{room}``: body an SDP offer
  (``application/sdp``); ``201 Created`` with the answer, ``Location`` (the
  session resource), ``ETag`` and a ``Link: <...>; rel="ice-server"`` per
  configured STUN/TURN server.
- ``PATCH <resource>``: trickled ICE candidates
  (``application/trickle-ice-sdpfrag``), ``204``; or an ICE restart
  (``If-Match: *``, or a new ``a=ice-ufrag``, with the new ``a=ice-pwd``):
  ``200`` with the server's new ``a=ice-ufrag``/``a=ice-pwd`` and a new
  ``ETag``, DTLS and SRTP kept (RFC 9725 section 4.3).
- ``DELETE <resource>``: leave the room, ``200``.
- ``OPTIONS`` on any of them: CORS preflight and ``Accept-Post``.

Authorization is ``Bearer <token>``, with the room rules of
:class:`~pysfu.admission.Admission`:

- a **join credential**, the ICE password of a grant from
  :meth:`~pysfu.admission.Admission.admit` (the example's
  ``POST /api/rooms/{room}/join`` returns it as ``ice.password``): single-use,
  expiring, for that room; the client joins as the admitted participant, and
  the answer's ``a=ice-pwd`` is the token itself;
- a **host key**: on WHIP, creates the room (if it does not exist) and
  publishes as its host; on WHEP, takes a participant seat in an existing
  room.

A session's ``PATCH`` and ``DELETE`` need the token that created it. A
client that vanishes without ``DELETE`` is removed by ICE consent
(:class:`~pysfu.IceConfig`), freeing its seat.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Collection, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from ..admission import Admission, HostKeys, JoinGrant
from ..config import IceServer
from ..digests import secret_digest as _digest
from ..errors import (
    BadOffer,
    CredentialError,
    CredentialUnknown,
    PysfuError,
    RoomNotFound,
)
from ..messages import Candidate, ServerMessage, SignallingError
from ..participant import Participant, Role
from ..peer.answering import ClientOffer, Purpose
from ..ratelimit import ClientLimits
from ..rooms import RoomOptions, RoomSeats
from ..slugs import EMOJI_ALPHABET
from ..turn import with_turn_credentials
from .adapter import enforce_cpu_budget

__all__ = [
    "MAX_BODY",
    "SDP",
    "SDP_FRAGMENT",
    "WhipEndpoint",
    "WhipSession",
    "link_header",
    "valid_slug",
]

logger = logging.getLogger(__name__)

SDP = "application/sdp"
#: Sent with 429: when to try again, in seconds.
_RETRY = {"Retry-After": "1"}
SDP_FRAGMENT = "application/trickle-ice-sdpfrag"
#: Largest offer or SDP fragment accepted, in bytes.
MAX_BODY = 64 * 1024
_ASCII_SLUG = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_slug(slug: str) -> bool:
    """A room name as :mod:`pysfu.slugs` makes them or ``[A-Za-z0-9_-]{1,64}``."""
    if _ASCII_SLUG.fullmatch(slug):
        return True
    return 0 < len(slug) <= 32 and all(c in EMOJI_ALPHABET for c in slug)


def link_header(server: IceServer) -> str:
    """An RFC 9725 ``Link`` header value announcing a STUN or TURN server."""
    value = f'<{server.urls}>; rel="ice-server"'
    if server.username is not None:
        value += f'; username="{server.username}"'
    if server.credential is not None:
        value += f'; credential="{server.credential}"; credential-type="password"'
    return value


class _Refused(Exception):
    """An HTTP error with a text body saying why."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def _refused_for(exc: PysfuError) -> _Refused:
    return _Refused(exc.http_status, f"{exc.code}: {exc}")


@dataclass(eq=False)
class WhipSession:
    """One WHIP or WHEP session: its HTTP resource and its participant."""

    resource_id: str
    purpose: Purpose
    room_id: str
    participant: Participant
    token_digest: bytes
    etag: str
    #: The client's ICE username fragment (a different one means ICE restart).
    ice_username_fragment: str | None
    #: ICE restarts done with a PATCH (RFC 9725 section 4.3).
    ice_restarts: int = 0
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        base = "whip" if self.purpose is Purpose.PUBLISH else "whep"
        return f"/{base}/{_quote(self.room_id)}/{self.resource_id}"


def _quote(slug: str) -> str:
    from ..slugs import slug_path

    return slug_path(slug)


async def _discard(message: ServerMessage) -> None:
    """WHIP/WHEP has no channel for room messages: they are dropped."""


class WhipEndpoint:
    """The WHIP and WHEP HTTP resources over an :class:`Admission`'s rooms.

    - ``host_keys``: keys that may create a room by publishing into it (and
      watch any room); ``None`` allows join credentials only.
    - ``ice_servers``: STUN/TURN servers announced to clients (``Link``).
    - ``turn_secret``, ``turn_ttl``: with a TURN server's shared secret, each
      session's ``Link`` headers carry TURN credentials of its own, valid
      ``turn_ttl`` seconds (see :mod:`pysfu.turn`).
    - ``allowed_origins``: origins of pages that may call these resources
      from a browser (CORS); ``"*"`` allows any. ``None``: same-origin pages
      only.
    - ``room_size``: ``max_participants`` of rooms created by a host's WHIP
      request.
    - ``offers_per_second``, ``offer_burst``: offers one client address may
      POST (each costs parsing and checking an SDP); the excess gets
      ``429`` with ``Retry-After`` before any of that work.

    Add :meth:`routes` to an ``aiohttp.web.Application``; call :meth:`close`
    on shutdown (the SFU's rooms are the application's to close).
    """

    def __init__(
        self,
        admission: Admission[Participant],
        *,
        host_keys: HostKeys | None = None,
        ice_servers: Iterable[IceServer] = (),
        allowed_origins: Collection[str] | None = None,
        room_size: int = 1,
        offers_per_second: float = 5.0,
        offer_burst: int = 30,
        turn_secret: str | None = None,
        turn_ttl: float = 3600.0,
    ) -> None:
        if not admission.rooms.supports_client_offers:
            raise TypeError(
                "WHIP/WHEP clients send their own offer, which these rooms cannot"
                f" take ({type(admission.rooms).__name__}: rooms in worker"
                " processes, say): give WhipEndpoint an Admission into an"
                " in-process SFU"
            )
        self.admission = admission
        #: The rooms the sessions join (they take client offers).
        self.rooms = admission.rooms
        self.host_keys = host_keys
        self.ice_servers = tuple(ice_servers)
        self.turn_secret = turn_secret
        self.turn_ttl = turn_ttl
        self.allowed_origins = allowed_origins
        self.room_size = room_size
        self.sessions: dict[str, WhipSession] = {}
        self._offer_limits = ClientLimits(offers_per_second, offer_burst)

    def routes(self, prefix: str = "") -> list[web.RouteDef]:
        """The routes: ``{prefix}/whip/{room}``, ``{prefix}/whep/{room}`` and
        their session resources."""
        routes = []
        for base, purpose in (("whip", Purpose.PUBLISH), ("whep", Purpose.WATCH)):
            endpoint = f"{prefix}/{base}/{{room}}"
            resource = endpoint + "/{resource}"

            async def post(
                request: web.Request, purpose: Purpose = purpose
            ) -> web.Response:
                return await self._respond(request, self._post(request, purpose))

            routes += [
                web.post(endpoint, post),
                web.options(endpoint, self.options),
                web.patch(resource, self.patch),
                web.delete(resource, self.delete),
                web.options(resource, self.options),
            ]
        return routes

    async def close(self) -> None:
        """Forget every session (their participants leave with their rooms)."""
        for session in list(self.sessions.values()):
            if session._watcher is not None:
                session._watcher.cancel()
        self.sessions.clear()

    # ------------------------------------------------------------------
    # handlers

    async def options(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.headers["Accept-Post"] = SDP
        self._cors(request, response)
        return response

    async def patch(self, request: web.Request) -> web.Response:
        return await self._respond(request, self._patch(request))

    async def delete(self, request: web.Request) -> web.Response:
        return await self._respond(request, self._delete(request))

    async def _respond(
        self, request: web.Request, handler: Awaitable[web.Response]
    ) -> web.Response:
        try:
            response = await handler
        except _Refused as exc:
            response = web.Response(
                status=exc.status, text=exc.reason + "\n", headers=exc.headers
            )
        self._cors(request, response)
        return response

    async def _post(self, request: web.Request, purpose: Purpose) -> web.Response:
        if not self._offer_limits.allow(request.remote):
            raise _Refused(429, "too many offers from this address", _RETRY)
        token = _bearer(request)
        if not token:
            raise _Refused(
                401, "a bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        room_id = request.match_info["room"]
        if not valid_slug(room_id):
            raise _Refused(400, f"not a room name: {room_id!r}")
        offer = ClientOffer(await _body(request, SDP), purpose)
        is_host = self.host_keys is not None and self.host_keys.check(token)
        if is_host:
            participant = await self._join_with_host_key(room_id, offer)
        else:
            participant = await self._join_with_credential(room_id, token, offer)
        enforce_cpu_budget(participant)  # (its trickled candidates, RTCP)
        assert participant.answerer is not None and participant.answerer.answer
        answer = participant.answerer.answer
        parsed = offer.check()  # checked before joining: cannot fail now
        session = WhipSession(
            resource_id=secrets.token_urlsafe(16),
            purpose=purpose,
            room_id=room_id,
            participant=participant,
            token_digest=_digest(token),
            etag=f'"{secrets.token_hex(8)}"',
            ice_username_fragment=parsed.ice_username_fragment,
        )
        self.sessions[session.resource_id] = session
        session._watcher = asyncio.get_running_loop().create_task(
            self._forget_when_closed(session)
        )
        logger.info(
            "%s session %s: %s in room %s",
            "WHIP" if purpose is Purpose.PUBLISH else "WHEP",
            session.resource_id,
            participant.id,
            room_id,
        )
        response = web.Response(status=201, body=answer.encode(), content_type=SDP)
        response.headers["Location"] = session.path
        response.headers["ETag"] = session.etag
        servers = self.ice_servers
        if self.turn_secret is not None:
            servers = with_turn_credentials(
                servers, self.turn_secret, participant.id, self.turn_ttl
            )
        for server in servers:
            response.headers.add("Link", link_header(server))
        return response

    async def _join_with_host_key(
        self, room_id: str, offer: ClientOffer
    ) -> Participant:
        _checked(offer, None)  # before a room is made for it
        created = False
        if offer.purpose is Purpose.PUBLISH and self._seats(room_id) is None:
            try:
                await self.rooms.create_room(
                    RoomOptions(room_id, max_participants=self.room_size)
                )
            except PysfuError as exc:
                raise _refused_for(exc) from None
            created = True
        role = Role.HOST if offer.purpose is Purpose.PUBLISH else Role.PARTICIPANT
        try:
            room = self.rooms.seats(room_id)
            _checked(offer, room.video_codecs)
            # a name people can read on their tiles (the default is the raw id)
            name = "WHIP publisher" if role is Role.HOST else "WHEP viewer"
            grant = self.admission.admit(
                # a WHIP client has no way to present a rejoin credential
                room_id,
                role,
                name=name,
                host_authorized=True,
                rejoinable=False,
            )
            return await self._join(grant, offer)
        except BaseException as exc:
            seats = self._seats(room_id) if created else None
            if seats is not None and not seats.has_host and not seats.participants:
                await self.rooms.close_room(room_id, "host failed to join")
            if isinstance(exc, PysfuError):
                raise _refused_for(exc) from None
            raise

    async def _join_with_credential(
        self, room_id: str, token: str, offer: ClientOffer
    ) -> Participant:
        try:
            grant = self.admission.grant_for_password(token)
        except CredentialUnknown:
            raise _Refused(
                401,
                "unknown token: neither a host key nor a join credential",
                {"WWW-Authenticate": "Bearer"},
            ) from None
        except CredentialError as exc:
            raise _refused_for(exc) from None
        if grant.room_id != room_id:
            raise _Refused(401, f"this join credential is not for room {room_id}")
        try:
            room = self.rooms.seats(room_id)
        except RoomNotFound as exc:
            raise _refused_for(exc) from None
        # before redeeming: a bad offer must not spend the credential
        _checked(offer, room.video_codecs)
        try:
            return await self._join(grant, offer)
        except PysfuError as exc:
            raise _refused_for(exc) from None

    def _seats(self, room_id: str) -> RoomSeats | None:
        try:
            return self.rooms.seats(room_id)
        except RoomNotFound:
            return None

    async def _join(self, grant: JoinGrant, offer: ClientOffer) -> Participant:
        try:
            return await self.admission.join(
                grant.participant_id, _discard, offer=offer
            )
        except ValueError as exc:  # aiortc refusing the description late
            raise BadOffer(str(exc)) from exc

    async def _patch(self, request: web.Request) -> web.Response:
        session = self._session(request)
        fragment = await _body(request, SDP_FRAGMENT)
        if_match = request.headers.get("If-Match")
        restart = _fragment_ufrag(fragment)
        if if_match == "*" or (
            restart is not None and restart != session.ice_username_fragment
        ):
            return self._restart_ice(session, fragment, restart)
        if if_match is not None and if_match != session.etag:
            raise _Refused(412, "If-Match does not match the session's ETag")
        for candidate in _fragment_candidates(fragment):
            try:
                await session.participant.add_candidate(candidate)
            except SignallingError as exc:
                raise _Refused(400, str(exc)) from None
        response = web.Response(status=204)
        response.headers["ETag"] = session.etag
        return response

    def _restart_ice(
        self, session: WhipSession, fragment: str, ufrag: str | None
    ) -> web.Response:
        """An ICE restart (RFC 9725 section 4.3): the fragment has the
        client's new ``a=ice-ufrag``/``a=ice-pwd``; ``200`` with the server's
        new ones and a new ETag. DTLS and SRTP are kept; the client's checks
        with the new credentials select the pair. The server's candidates
        are unchanged, so the answer lists none. The new password is sent
        here, to the holder of the session's token."""
        answerer = session.participant.answerer
        if answerer is None or ufrag is None:
            raise _Refused(400, "an ICE restart needs a=ice-ufrag and a=ice-pwd")
        try:
            body = answerer.restart_ice_with(fragment)
        except SignallingError as exc:
            raise _Refused(400, f"{exc.code}: {exc}") from None
        session.ice_username_fragment = ufrag
        session.etag = f'"{secrets.token_hex(8)}"'
        session.ice_restarts += 1
        response = web.Response(status=200, body=body.encode())
        response.headers["Content-Type"] = SDP_FRAGMENT
        response.headers["ETag"] = session.etag
        return response

    async def _delete(self, request: web.Request) -> web.Response:
        session = self._session(request)
        self._forget(session)
        await session.participant.leave("left")
        return web.Response(status=200, text="session ended\n")

    # ------------------------------------------------------------------

    def _session(self, request: web.Request) -> WhipSession:
        """The session a PATCH/DELETE names, if the token is the one that made it."""
        session = self.sessions.get(request.match_info["resource"])
        if session is None or session.room_id != request.match_info["room"]:
            raise _Refused(404, "no such session")
        token = _bearer(request)
        if not token or not hmac.compare_digest(_digest(token), session.token_digest):
            raise _Refused(
                401,
                "the token that created this session is required",
                {"WWW-Authenticate": "Bearer"},
            )
        return session

    async def _forget_when_closed(self, session: WhipSession) -> None:
        await session.participant.wait_closed()
        self._forget(session)

    def _forget(self, session: WhipSession) -> None:
        if self.sessions.get(session.resource_id) is session:
            del self.sessions[session.resource_id]

    def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        allowed = self.allowed_origins
        if origin is None or allowed is None:
            return
        if "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        else:
            return
        response.headers["Access-Control-Allow-Methods"] = (
            "POST, PATCH, DELETE, OPTIONS"
        )
        response.headers["Access-Control-Allow-Headers"] = (
            "Authorization, Content-Type, If-Match"
        )
        response.headers["Access-Control-Expose-Headers"] = "Location, ETag, Link"


def _checked(offer: ClientOffer, video_codecs: tuple[str, ...] | None) -> None:
    try:
        offer.check(video_codecs)
    except BadOffer as exc:
        raise _Refused(
            422 if "codec" in str(exc) else 400, f"bad offer: {exc}"
        ) from None


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _body(request: web.Request, content_type: str) -> str:
    if request.content_type != content_type:
        raise _Refused(415, f"the body must be {content_type}")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
    data = b""
    while chunk := await request.content.read(MAX_BODY + 1 - len(data)):
        data += chunk  # read() may return part of the body: read to the end
        if len(data) > MAX_BODY:
            raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the body is not UTF-8 text") from None


def _fragment_ufrag(fragment: str) -> str | None:
    for line in fragment.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip()
    return None


def _fragment_candidates(fragment: str) -> list[Candidate]:
    """The candidates of an SDP fragment (RFC 8840), with the mid each is for."""
    candidates = []
    mid: str | None = None
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=candidate:"):
            candidates.append(
                Candidate(
                    candidate=line[2:],
                    sdp_mid=mid,
                    sdp_mline_index=0 if mid is None else None,
                )
            )
    return candidates
