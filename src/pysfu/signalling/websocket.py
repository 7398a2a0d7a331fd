"""A WebSocket signalling adapter for aiohttp (``pip install pysfu[aiohttp]``).

One WebSocket per participant, carrying the JSON messages of
:mod:`pysfu.signalling.messages`. The session starts by redeeming the
participant's join grant (see :mod:`pysfu.admission`); the server's offers
go out with the ICE password redacted, since the client got it from the join
backend. When the socket closes the participant leaves; when the participant
is removed (room closed, connection failed) the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..admission import Admission, redact_ice_password
from ..errors import CredentialError, PysfuError
from .adapter import MAX_MESSAGE_LENGTH, deliver_json
from .messages import Error, Offer, RoomClosed, ServerMessage, to_json

logger = logging.getLogger(__name__)

#: Close code sent when the join credentials are refused.
CLOSE_CREDENTIALS_REFUSED = 4401
#: Messages queued for a client that reads too slowly before it is dropped.
MAX_QUEUED_MESSAGES = 256


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


async def websocket_session(
    request: web.Request,
    admission: Admission,
    participant_id: str,
    *,
    allowed_origins: Collection[str] | None = None,
) -> web.StreamResponse:
    """Serve one participant's signalling over a WebSocket until either side ends.

    A request from a page whose origin is not allowed (see
    :func:`origin_allowed`) is refused with HTTP 403 before the upgrade.
    """
    if not origin_allowed(request, allowed_origins):
        logger.warning("refused a WebSocket from origin %s", request.headers["Origin"])
        return web.json_response(
            {"error": "forbidden_origin", "message": "this origin may not connect"},
            status=403,
        )
    ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=MAX_MESSAGE_LENGTH)
    await ws.prepare(request)
    # None in the queue means "close the socket"
    queue: asyncio.Queue[ServerMessage | None] = asyncio.Queue(MAX_QUEUED_MESSAGES)

    async def outbox(message: ServerMessage) -> None:
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("%s reads too slowly; closing its socket", participant_id)
            await ws.close()

    try:
        participant = await admission.join(participant_id, outbox)
    except PysfuError as exc:
        code = CLOSE_CREDENTIALS_REFUSED if isinstance(exc, CredentialError) else 4404
        await ws.send_json(to_json(Error(exc.code, str(exc))))
        await ws.close(code=code, message=exc.code.encode())
        return ws

    writer = asyncio.get_running_loop().create_task(_write(ws, queue))
    watcher = asyncio.get_running_loop().create_task(participant.wait_closed())
    watcher.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await deliver_json(participant, message.data)
            elif message.type == WSMsgType.BINARY:
                await participant.send(Error("bad_message", "send text frames"))
            if participant.closed:
                break
    finally:
        watcher.cancel()
        await participant.leave("websocket closed")
        await _drain(queue, writer)
        await ws.close()
    return ws


async def _write(
    ws: web.WebSocketResponse, queue: asyncio.Queue[ServerMessage | None]
) -> None:
    while True:
        message = await queue.get()
        if message is None:
            await ws.close()
            return
        data = to_json(message)
        if isinstance(message, Offer):
            data["sdp"] = redact_ice_password(message.sdp)
        try:
            await ws.send_json(data)
        except (ConnectionError, RuntimeError):
            return
        if isinstance(message, RoomClosed):
            await ws.close()
            return


async def _drain(
    queue: asyncio.Queue[ServerMessage | None], writer: asyncio.Task[None]
) -> None:
    """Let the writer flush what is queued (room-closed, ...), briefly."""
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(writer), 1.0)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
