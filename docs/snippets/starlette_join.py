"""The code of docs/how-to/other-frameworks.md: pysfu's join backend and its
WebSocket signalling in a Starlette app (``pip install starlette uvicorn
websockets``), served by uvicorn. FastAPI is Starlette underneath: the same
two functions are its routes."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pysfu import PysfuError
from pysfu.admission import Admission, redact_ice_password
from pysfu.messages import Offer, ServerMessage, to_json
from pysfu.signalling.adapter import deliver_json
from pysfu.signalling.join import join_fields, join_response


def refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


# --8<-- [start:app]
def make_app(admission: Admission[Any], host_key: str) -> Starlette:
    """``POST /api/rooms/{room}/join`` and ``/ws/{participant_id}``: the
    protocol pysfu-client.js speaks (docs/websocket-protocol.md)."""

    async def join(request: Request) -> JSONResponse:
        try:
            body = await request.json() if await request.body() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            name, role = join_fields(body)  # pysfu's checks of name and role
        except ValueError as exc:  # also the JSON decoder's errors
            return refusal(400, "bad_request", str(exc))
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            grant = admission.admit(
                request.path_params["room"],
                role,
                name=name,
                host_authorized=role == "host"
                and hmac.compare_digest(key.encode(), host_key.encode()),
                client=request.client.host if request.client else None,
            )
        except PysfuError as exc:  # room_not_found, room_full, unauthorized...
            return refusal(exc.http_status, exc.code, str(exc))
        # http://host/ws/<id> -> ws://host/ws/<id> (https -> wss)
        url = request.url_for("signalling", participant_id=grant.participant_id)
        answer = join_response(
            grant,
            ws_url=str(url).replace("http", "ws", 1),
            expires_in=admission.credential_ttl,
        )
        return JSONResponse(answer)

    async def signalling(websocket: WebSocket) -> None:
        await websocket.accept()
        hello = await websocket.receive_json()  # {"type": "hello", "token": ...}
        queue: asyncio.Queue[ServerMessage | None] = asyncio.Queue()

        async def outbox(message: ServerMessage) -> None:  # the core's messages
            queue.put_nowait(message)

        try:
            participant = await admission.join_with_token(
                websocket.path_params["participant_id"],
                str(hello.get("token")),
                outbox,
            )
        except PysfuError as exc:  # a wrong, used or expired credential
            await websocket.send_json(
                {"type": "error", "code": exc.code, "message": str(exc)}
            )
            await websocket.close(4401)
            return

        async def write() -> None:
            while (message := await queue.get()) is not None:
                data = to_json(message)
                if isinstance(message, Offer):  # the client has the password
                    data["sdp"] = redact_ice_password(message.sdp)
                await websocket.send_json(data)
            await websocket.close()  # the participant is gone (room closed...)

        async def closed() -> None:
            await participant.wait_closed()
            queue.put_nowait(None)  # after what the core sent before

        tasks = [asyncio.create_task(write()), asyncio.create_task(closed())]
        try:
            async for text in websocket.iter_text():
                await deliver_json(participant, text)  # answers, candidates...
        except WebSocketDisconnect:
            pass
        finally:
            await participant.leave("websocket closed")
            await asyncio.wait(tasks, timeout=1.0)  # room-closed flushed
            for task in tasks:
                task.cancel()

    return Starlette(
        routes=[
            Route("/api/rooms/{room}/join", join, methods=["POST"]),
            WebSocketRoute("/ws/{participant_id}", signalling, name="signalling"),
        ]
    )
    # --8<-- [end:app]


# --8<-- [start:serve]
def server(admission: Admission[Any], host_key: str, port: int) -> uvicorn.Server:
    """The app in uvicorn: ``await server(...).serve()`` in the event loop of
    the SFU (one loop for both: the core is not thread-safe)."""
    config = uvicorn.Config(
        make_app(admission, host_key), host="127.0.0.1", port=port, lifespan="off"
    )
    return uvicorn.Server(config)
    # --8<-- [end:serve]
