"""The HTTP join step of the WebSocket protocol, ready-made for aiohttp.

A browser joins a room in two steps (see ``docs/websocket-protocol.md``): it
posts a join request, whose answer carries its participant id, the ICE
password of the server's side of its connection and a signalling token, then
opens the WebSocket that :func:`pysfu.signalling.websocket.websocket_session`
serves. :func:`join_response` builds that answer in the shape the packaged
browser client (``pysfu-client.js``, :func:`browser_client_path`) reads;
:func:`join_handler` is a whole ``POST /api/rooms/{room}/join`` handler::

    app.router.add_post("/api/rooms/{room}/join", join_handler(admission))
    app.router.add_get("/ws/{participant_id}", signalling)

Requires aiohttp (the ``aiohttp`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from ..admission import Admission, JoinGrant
from ..config import IceServer
from ..errors import PysfuError
from ..ports import RoleName

__all__ = [
    "JoinHandler",
    "browser_client_path",
    "join_fields",
    "join_handler",
    "join_response",
    "json_body",
    "public_scheme",
]

#: An aiohttp request handler.
JoinHandler = Callable[[web.Request], Awaitable[web.Response]]

#: Display names longer than this are cut (they are shown to everyone).
_MAX_NAME_LENGTH = 64


def browser_client_path() -> Path:
    """The path of ``pysfu-client.js``, the browser client shipped in the
    package (its TypeScript declarations are ``pysfu-client.d.ts`` beside
    it). Serve it to your pages, e.g. ``web.FileResponse(browser_client_path())``.
    """
    return Path(__file__).resolve().parent.parent / "app" / "static" / "pysfu-client.js"


def join_response(
    grant: JoinGrant,
    *,
    ws_url: str,
    expires_in: float,
    ice_servers: Sequence[IceServer] = (),
) -> dict[str, Any]:
    """The JSON body of a successful join answer.

    ``ws_url``: where the client opens its signalling WebSocket;
    ``expires_in``: seconds the client has to establish its connection
    (:attr:`Admission.credential_ttl <pysfu.admission.Admission>`);
    ``ice_servers``: the STUN/TURN servers the client's peer connection uses.
    The signalling token goes in the body, never in ``ws_url``: URLs end up in
    access logs. The client sends it as the socket's first message.
    ``seat_rejoin``: the grant's rejoin credential, when it has one (see
    :attr:`~pysfu.LimitsConfig.guest_grace`): the client presents it as a
    bearer token to join again after a reload.
    """
    answer = {
        "participant_id": grant.participant_id,
        "room": grant.room_id,
        "role": grant.role.value,
        "name": grant.name,
        "ice": {
            "username_fragment": grant.credentials.username_fragment,
            "password": grant.credentials.password,
            "expires_in": expires_in,
        },
        "ice_servers": [_ice_server_json(server) for server in ice_servers],
        "ws_url": ws_url,
        "signalling_token": grant.signalling_token,
    }
    if grant.rejoin is not None:
        answer["seat_rejoin"] = grant.rejoin
    return answer


def join_handler(
    admission: Admission[Any],
    *,
    ws_path: str = "/ws/{participant_id}",
    ice_servers: Sequence[IceServer] = (),
    authorize_host: Callable[[web.Request], bool] | None = None,
) -> JoinHandler:
    """An aiohttp handler for ``POST /api/rooms/{room}/join``.

    The body is ``{"name": ..., "role": "participant" | "host"}`` (both
    optional; an empty body joins as a participant without a name). A host
    join is refused (401 ``unauthorized``) unless ``authorize_host`` says yes
    for the request, e.g. by checking a bearer key. ``ws_path`` is the route
    of your WebSocket handler, with ``{participant_id}`` in it; the answer's
    ``ws_url`` is it on the host the request came to (``wss`` behind TLS,
    also behind a proxy that sets ``X-Forwarded-Proto``). Refusals are JSON
    ``{"error": code, "message": text}`` with the error's HTTP status (404
    ``room_not_found``, 409 ``room_full``, 400 for a malformed body, ...).
    A participant's ``Authorization: Bearer`` is its ``seat_rejoin``
    credential, if any (see :func:`join_response`).
    """

    async def join(request: web.Request) -> web.Response:
        try:
            name, role = join_fields(await json_body(request))
        except ValueError as exc:
            return _refusal(400, "bad_request", str(exc))
        authorized = (
            role == "host" and authorize_host is not None and authorize_host(request)
        )
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        rejoin = token.strip() if scheme.lower() == "bearer" else None
        try:
            grant = admission.admit(
                request.match_info["room"],
                role,
                name=name,
                host_authorized=authorized,
                client=request.remote,
                # a participant back from a reload takes its kept seat
                rejoin=rejoin if role == "participant" else None,
            )
        except PysfuError as exc:
            return _refusal(exc.http_status, exc.code, str(exc))
        secure = public_scheme(request) == "https"
        path = ws_path.format(participant_id=grant.participant_id)
        body = join_response(
            grant,
            ws_url=f"{'wss' if secure else 'ws'}://{request.host}{path}",
            expires_in=admission.credential_ttl,
            ice_servers=ice_servers,
        )
        return web.json_response(body)

    return join


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body counts as ``{}``.

    Raises ``ValueError`` for anything else, including bodies over aiohttp's
    size limit, undecodable text (an unknown or wrong charset) and JSON nested
    too deep to parse.
    """
    try:
        text = await request.text()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ValueError("the body is too large") from exc
    except (LookupError, UnicodeDecodeError) as exc:  # unknown or wrong charset
        raise ValueError("the body is not text") from exc
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


def join_fields(body: Mapping[str, Any]) -> tuple[str, RoleName]:
    """``(name, role)`` of a join request's JSON body: ``role`` is ``host``
    or ``participant`` (the default), ``name`` a string (default empty), cut
    to 64 characters. Raises ``ValueError`` for anything else, including a
    name that cannot be sent back as UTF-8 (a lone surrogate)."""
    name, role = body.get("name") or "", body.get("role", "participant")
    if role not in ("host", "participant") or not isinstance(name, str):
        raise ValueError("role must be 'host' or 'participant', name a string")
    name = name[:_MAX_NAME_LENGTH]
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the name is not valid text") from exc
    return name, ("host" if role == "host" else "participant")


def public_scheme(request: web.Request) -> str:
    """``http`` or ``https`` as the browser sees it, also behind a
    TLS-terminating proxy that sets ``X-Forwarded-Proto``."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    return forwarded if forwarded in ("http", "https") else request.scheme


def _refusal(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _ice_server_json(server: IceServer) -> dict[str, Any]:
    fields = (
        ("urls", server.urls),
        ("username", server.username),
        ("credential", server.credential),
    )
    return {key: value for key, value in fields if value is not None}
