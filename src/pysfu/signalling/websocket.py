"""A WebSocket signalling adapter for aiohttp (``pip install pysfu[aiohttp]``).

One WebSocket per participant, carrying the JSON messages of
:mod:`pysfu.signalling.messages`. The client's first message proves who it
is: ``{"type": "hello", "token": <signalling token>}``, the token coming
from the join backend with the grant (see :mod:`pysfu.admission`), never in
the URL (URLs end up in access logs and browser history). The session then
redeems the grant; the server's offers go out with the ICE password
redacted, since the client got it from the join backend. After an ICE
restart (``{"type": "restart_ice"}``) the offers carry the server's fresh
password as it is: the client can learn it nowhere else, and the socket is
already authenticated.

If the socket drops while the peer connection lives, the participant keeps
its seat and media keeps flowing for ``reconnect_grace`` seconds: a client
that reconnects to its ``ws_url`` and sends ``{"type": "resume", "token":
<resume token>}`` (the token came in the ``session`` message) carries on,
the pending offer is sent again, and messages queued meanwhile are
delivered. Each resume token works once: a resumed session gets a new one
in a new ``session`` message. Otherwise the participant leaves when the
grace period ends. When the participant is removed (room closed, connection
failed) the socket is closed.

A host's session also gets ``{"type": "waiting", "participants": [...]}``
whenever the room's admitted-but-not-connected participants change, and
may send ``{"type": "refuse", "participant_id": ...}`` to withdraw one's
grant (see :meth:`pysfu.admission.Admission.refuse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..accounting import CpuAccount, metered
from ..admission import Admission, redact_ice_password
from ..errors import CredentialError, PysfuError
from ..messages import Error, Offer, RoomClosed, ServerMessage, SignallingError, to_json
from ..ports import Role
from .adapter import (
    MAX_MESSAGE_LENGTH,
    SessionParticipant,
    deliver_json,
    enforce_cpu_budget,
)

logger = logging.getLogger(__name__)

#: Close code sent when the join credentials (or a resume token) are refused.
CLOSE_CREDENTIALS_REFUSED = 4401
#: Close code sent when the first message is not a hello or resume in time.
CLOSE_NO_HELLO = 4400
#: Messages kept for a client that reads too slowly or is reconnecting; past
#: this the client is considered gone.
MAX_QUEUED_MESSAGES = 256
#: Longest first message (hello or resume) accepted.
MAX_HELLO_LENGTH = 1024


def origin_allowed(request: web.Request, allowed: Collection[str] | None) -> bool:
    """Whether a WebSocket request comes from an acceptable page.

    Browsers send the page's origin with every WebSocket request; without a
    check, any web page could open sessions on a user's behalf. ``allowed``
    lists origins such as ``"https://meet.example.org"``; ``None`` accepts the
    server's own origin only. Requests without an Origin header come from
    non-browser clients and are accepted (they can set any header anyway).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if allowed is not None:
        return origin in allowed or "*" in allowed
    return urlsplit(origin).netloc == request.host


@dataclass(frozen=True)
class _SessionInfo:
    """Sent first: how to resume this session on a new socket."""

    resume_token: str
    reconnect_grace: float
    type = "session"


@dataclass(frozen=True)
class _Waiting:
    """To a host: the room's admitted participants that have not connected."""

    participants: tuple[dict[str, object], ...]
    type = "waiting"


#: What a session queues for its client; ``None`` means "close the socket".
_Outgoing = ServerMessage | _SessionInfo | _Waiting | None


class _NoHello(PysfuError):
    """The first message was not a hello or resume with a token."""

    code = "hello_expected"


@dataclass(eq=False)
class _Session:
    """One participant's signalling, which may outlive one socket."""

    resume_token: str
    room_id: str = ""
    is_host: bool = False
    queue: asyncio.Queue[_Outgoing] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED_MESSAGES)
    )
    participant: SessionParticipant | None = None
    socket: web.WebSocketResponse | None = None
    expiry: asyncio.TimerHandle | None = None
    #: the participant's CPU account (None: its connection is in a worker)
    cpu: CpuAccount | None = None
    #: the ICE password of the join grant, redacted from the offers (the
    #: client has it); fresh ones after an ICE restart are not
    join_password: str | None = None
    #: what writes ``queue`` to ``socket``
    writer: asyncio.Task[None] | None = None

    async def outbox(self, message: ServerMessage) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            if self.participant is not None and not self.participant.closed:
                logger.warning(
                    "%s does not read its messages; removing it", str(self.participant)
                )
                asyncio.get_running_loop().create_task(
                    self.participant.leave("signalling backlog")
                )


class WebSocketSignalling:
    """Serves participants' WebSocket signalling, with reconnection.

    Route ``GET /ws/{participant_id}`` to :meth:`handle`. ``admission`` may
    admit into an :class:`~pysfu.SFU` or a :class:`~pysfu.workers.WorkerPool`.
    """

    def __init__(
        self,
        admission: Admission[SessionParticipant],
        *,
        allowed_origins: Collection[str] | None = None,
        reconnect_grace: float = 15.0,
        hello_timeout: float = 10.0,
    ) -> None:
        self.admission = admission
        self.allowed_origins = allowed_origins
        self.reconnect_grace = reconnect_grace
        #: Seconds a new socket has to send its hello (or resume).
        self.hello_timeout = hello_timeout
        self._sessions: dict[str, _Session] = {}
        self._stop_listening = admission.add_waiting_listener(self._waiting_changed)

    def close(self) -> None:
        """Stop following the admission (hosts get no more ``waiting``)."""
        self._stop_listening()
        self._stop_listening = lambda: None

    async def handle(
        self, request: web.Request, participant_id: str
    ) -> web.StreamResponse:
        """Serve one socket of a participant until either side ends it.

        A request from a page whose origin is not allowed (see
        :func:`origin_allowed`) is refused with HTTP 403 before the upgrade.
        """
        if not origin_allowed(request, self.allowed_origins):
            logger.warning(
                "refused a WebSocket from origin %s", request.headers["Origin"]
            )
            return web.json_response(
                {"error": "forbidden_origin", "message": "this origin may not connect"},
                status=403,
            )
        # aiohttp counts bytes and closes with 1009 past its limit; the limit
        # here is in characters. Accept up to 4 bytes a character, so an
        # oversized message gets a `too_large` error and the session lives on;
        # only frames no client could mean (> 4x) close the socket.
        ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=4 * MAX_MESSAGE_LENGTH)
        await ws.prepare(request)
        try:
            kind, token = await self._hello(ws)
            if kind == "resume":
                session = await self._resume(participant_id, token, ws)
            else:
                session = await self._start(participant_id, token)
        except PysfuError as exc:
            if isinstance(exc, CredentialError):
                code = CLOSE_CREDENTIALS_REFUSED
            else:
                code = CLOSE_NO_HELLO if isinstance(exc, _NoHello) else 4404
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(to_json(Error(exc.code, str(exc))))
            await ws.close(code=code, message=exc.code.encode())
            return ws
        await self._serve(session, ws)
        return ws

    async def _hello(self, ws: web.WebSocketResponse) -> tuple[str, str]:
        """The first message: ("hello", signalling token) or ("resume", token)."""
        try:
            message = await asyncio.wait_for(ws.receive(), self.hello_timeout)
        except asyncio.TimeoutError:
            raise _NoHello("no hello within the time allowed") from None
        value: object = None
        if message.type == WSMsgType.TEXT and len(message.data) <= MAX_HELLO_LENGTH:
            with contextlib.suppress(ValueError, RecursionError):
                value = json.loads(message.data)
        if (
            isinstance(value, dict)
            and value.get("type") in ("hello", "resume")
            and isinstance(value.get("token"), str)
        ):
            return value["type"], value["token"]
        raise _NoHello(
            'the first message must be {"type": "hello", "token": ...} '
            'or {"type": "resume", "token": ...}'
        )

    async def _start(self, participant_id: str, token: str) -> _Session:
        session = _Session(resume_token=secrets.token_urlsafe(18))
        session.queue.put_nowait(
            _SessionInfo(session.resume_token, self.reconnect_grace)
        )
        grant = self.admission.grant(participant_id)
        session.participant = await self.admission.join_with_token(
            participant_id, token, session.outbox
        )
        assert grant is not None  # join_with_token found it
        session.room_id = grant.room_id
        session.join_password = grant.credentials.password
        session.is_host = grant.role is Role.HOST
        self._sessions[participant_id] = session
        if session.is_host:
            self._waiting_changed(session.room_id)
        participant = session.participant
        session.cpu = enforce_cpu_budget(participant)

        def forget(_: object) -> None:
            self._sessions.pop(participant_id, None)
            if session.expiry is not None:
                session.expiry.cancel()
            with contextlib.suppress(asyncio.QueueFull):
                session.queue.put_nowait(None)

        watcher = asyncio.get_running_loop().create_task(participant.wait_closed())
        watcher.add_done_callback(forget)
        return session

    async def _resume(
        self, participant_id: str, token: str, ws: web.WebSocketResponse
    ) -> _Session:
        session = self._sessions.get(participant_id)
        if session is None or not hmac.compare_digest(session.resume_token, token):
            raise CredentialError("no session to resume with that token")
        assert session.participant is not None
        if session.socket is not None:
            # The client's network changed under a socket this side still
            # thinks open (its TCP connection dead on the old address, or
            # stuck in retransmission backoff): the holder of the current
            # resume token takes the session over at once instead of
            # waiting for the heartbeat to notice.
            old, session.socket = session.socket, None
            if session.writer is not None:
                session.writer.cancel()  # it must not take the new messages
            asyncio.get_running_loop().create_task(old.close())
            logger.info("a participant took its signalling over on a new socket")
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        logger.info("a participant reconnected its signalling")
        # taken before asking a worker for the offer: no second resume meanwhile
        session.socket = ws
        # a token works once: the one just used may be in someone's hands
        session.resume_token = secrets.token_urlsafe(18)
        session.queue.put_nowait(
            _SessionInfo(session.resume_token, self.reconnect_grace)
        )
        try:
            pending = await session.participant.fetch_pending_offer()
        except BaseException:  # this socket is gone: the grace period starts anew
            session.socket = None
            session.expiry = asyncio.get_running_loop().call_later(
                self.reconnect_grace, self._expire, session.participant
            )
            raise
        if pending is not None:  # the client may have lost it with the socket
            session.queue.put_nowait(Offer(pending))
        return session

    async def _serve(self, session: _Session, ws: web.WebSocketResponse) -> None:
        participant = session.participant
        assert participant is not None
        session.socket = ws
        writer = session.writer = asyncio.get_running_loop().create_task(
            _write(ws, session.queue, session.join_password)
        )
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    if session.is_host and await self._host_command(
                        session, message.data
                    ):
                        continue
                    await metered(
                        session.cpu,
                        "signalling",
                        deliver_json(participant, message.data),
                    )
                elif message.type == WSMsgType.BINARY:
                    await participant.refuse(
                        SignallingError("bad_message", "send text frames")
                    )
                if participant.closed:
                    break
        finally:
            if session.socket is not ws:  # taken over by a newer socket
                writer.cancel()
            elif participant.closed or self.reconnect_grace <= 0:
                session.socket = None
                await participant.leave("websocket closed")
                await _drain(writer)
            else:
                session.socket = None
                writer.cancel()
                logger.info("%s lost its signalling; waiting for it", str(participant))
                session.expiry = asyncio.get_running_loop().call_later(
                    self.reconnect_grace, self._expire, participant
                )
            await ws.close()

    def _expire(self, participant: SessionParticipant) -> None:
        logger.info("a participant did not reconnect its signalling")
        asyncio.get_running_loop().create_task(participant.leave("websocket lost"))

    async def _host_command(self, session: _Session, text: str) -> bool:
        """Handle a host's ``refuse`` message; False for anything else."""
        if '"refuse"' not in text or len(text) > MAX_HELLO_LENGTH:
            return False
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return False
        if not isinstance(value, dict) or value.get("type") != "refuse":
            return False
        assert session.participant is not None
        if not await session.participant.within_rate_limit():
            return True
        target = value.get("participant_id")
        if not isinstance(target, str) or not self.admission.refuse(
            session.room_id, target
        ):
            await session.outbox(
                Error("not_waiting", "no such participant waits to join this room")
            )
        return True

    def _waiting_changed(self, room_id: str) -> None:
        hosts = [
            s
            for s in self._sessions.values()
            if s.is_host and s.room_id == room_id and s.participant is not None
        ]
        if not hosts:
            return
        waiting = _Waiting(
            tuple(
                {"participant_id": g.participant_id, "name": g.name}
                for g in self.admission.waiting(room_id)
            )
        )
        for host in hosts:
            with contextlib.suppress(asyncio.QueueFull):
                host.queue.put_nowait(waiting)


async def websocket_session(
    request: web.Request,
    admission: Admission[SessionParticipant],
    participant_id: str,
    *,
    allowed_origins: Collection[str] | None = None,
) -> web.StreamResponse:
    """Serve one participant's signalling on one WebSocket, without reconnection.

    The simplest way to use the adapter: when the socket closes, the
    participant leaves. :class:`WebSocketSignalling` adds reconnection.
    """
    signalling = WebSocketSignalling(
        admission, allowed_origins=allowed_origins, reconnect_grace=0
    )
    try:
        return await signalling.handle(request, participant_id)
    finally:  # one per socket: its admission listener must not outlive it
        signalling.close()


async def _write(
    ws: web.WebSocketResponse,
    queue: asyncio.Queue[_Outgoing],
    join_password: str | None,
) -> None:
    while True:
        message = await queue.get()
        if message is None:
            await ws.close()
            return
        data: dict[str, object]
        if isinstance(message, _SessionInfo):
            data = {
                "type": "session",
                "resume_token": message.resume_token,
                "reconnect_grace": message.reconnect_grace,
            }
        elif isinstance(message, _Waiting):
            data = {"type": "waiting", "participants": list(message.participants)}
        else:
            data = to_json(message)
        if isinstance(message, Offer):
            data["sdp"] = redact_ice_password(message.sdp, join_password)
        try:
            await ws.send_json(data)
        except (ConnectionError, RuntimeError):
            return
        if isinstance(message, RoomClosed):
            await ws.close()
            return


async def _drain(writer: asyncio.Task[None]) -> None:
    """Let the writer flush what is queued (room-closed, ...), briefly."""
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(writer), 1.0)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
