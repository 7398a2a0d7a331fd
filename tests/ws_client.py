"""A hand-made client of the example's protocol: aiohttp for HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
from dataclasses import fields
from typing import Any

import aiohttp

from pysfu.messages import ClientMessage, ServerMessage, to_json
from pysfu.workers.codec import SERVER_MESSAGE_TYPES

from .example_server import HOST_KEY


def parse_server_message(data: dict[str, Any]) -> ServerMessage:
    """The message a JSON object from the server describes; every field of
    its class must be present (KeyError otherwise: the server left one out)."""
    cls = SERVER_MESSAGE_TYPES[data["type"]]
    message: ServerMessage = cls(**{f.name: data[f.name] for f in fields(cls)})
    return message


async def create_room(
    http: aiohttp.ClientSession,
    base: str,
    key: str = HOST_KEY,
    slug: str | None = None,
) -> Any:
    """Status and body of ``POST /api/rooms`` through ``base`` (``slug``:
    the kind of link asked for, e.g. ``"ascii"``; the server's default
    otherwise)."""
    async with http.post(
        f"{base}/api/rooms",
        json=None if slug is None else {"slug": slug},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        return response.status, await response.json()


async def join(
    http: aiohttp.ClientSession,
    join_url: str,
    role: str = "participant",
    name: str = "",
) -> tuple[int, Any]:
    api = join_url.replace("/r/", "/api/rooms/") + "/join"
    headers = {"Authorization": f"Bearer {HOST_KEY}"} if role == "host" else {}
    async with http.post(api, json={"role": role, "name": name}, headers=headers) as r:
        return r.status, await r.json()


class WsClient:
    """Speaks the WebSocket protocol; same interface as MemoryClient for Peer.

    Open one with :meth:`connect`; constructed directly on a socket, the
    client must send its hello itself (:meth:`hello`).
    """

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, grant: dict[str, Any], **kwargs: Any
    ) -> WsClient:
        """Open ``grant``'s WebSocket and say hello with its signalling token."""
        ws = await http.ws_connect(grant["ws_url"], **kwargs)
        client = cls(ws, grant["ice"]["password"])
        await client.hello(grant["signalling_token"])
        return client

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, password: str) -> None:
        self.ws = ws
        self.password = password
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.raw: list[dict[str, Any]] = []
        self.resume_token: str | None = None
        self.waiting: list[dict[str, Any]] = []
        self.waiting_changed = asyncio.Event()
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            self.raw.append(json.loads(message.data))
            data = json.loads(message.data)
            if data["type"] == "session":  # how to resume after a drop
                self.resume_token = data["resume_token"]
                continue
            if data["type"] == "waiting":  # to a host: who was admitted, unconnected
                self.waiting = data["participants"]
                self.waiting_changed.set()
                continue
            if data["type"] == "offer":  # put back the password from the join backend
                data["sdp"] = data["sdp"].replace(
                    "a=ice-pwd:REDACTED", f"a=ice-pwd:{self.password}"
                )
            self.inbox.put_nowait(parse_server_message(data))
        self.closed.set()

    async def hello(self, token: str) -> None:
        """The first message of a session: the grant's signalling token."""
        await self.ws.send_str(json.dumps({"type": "hello", "token": token}))

    async def send(self, message: ClientMessage) -> None:
        await self.ws.send_str(json.dumps(to_json(message)))

    async def reconnect(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        """Open a new socket for the same session (after a drop)."""
        self._reader.cancel()
        self.ws = await http.ws_connect(ws_url)
        await self.ws.send_str(
            json.dumps({"type": "resume", "token": self.resume_token})
        )
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
