"""A signalling adapter over HTTP long-polling (docs/how-to/signalling-adapter.md).

    POST /rooms/{room}/join  {"role": "host"|"participant"}
                             -> {"participant_id", "token"}
    GET  /poll?after=N       the messages numbered above N; waits up to 25 s
    POST /send               one client message, as JSON -> 204

/poll and /send need ``Authorization: Bearer <token>``: the session's secret,
given only in the join answer (the participant id is public: every member
sees it). A client that stops polling for --idle-timeout seconds leaves its
room.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from typing import Any

from aiohttp import web

from pysfu import SFU, IceConfig, Participant, PysfuError, SFUConfig
from pysfu.signalling import ServerMessage, deliver_json, to_json

POLL_SECONDS = 25.0  # a poll with nothing to return answers after this long


# --8<-- [start:session]
class Session:
    """One client: its participant and the messages it has not acknowledged."""

    def __init__(self) -> None:
        self.participant: Participant | None = None
        self.messages: list[dict[str, Any]] = []
        self.seq = 0
        self.changed = asyncio.Event()
        self.polls = 0  # polls waiting right now
        self.last_seen = asyncio.get_running_loop().time()
        self.ended = False  # the participant is gone: no new messages
        self.task: asyncio.Task[None] | None = None  # its supervise()

    async def outbox(self, message: ServerMessage) -> None:
        """The core calls this with every message for the client: number it."""
        self.seq += 1
        self.messages.append({"seq": self.seq, **to_json(message)})
        self.changed.set()
        # --8<-- [end:session]


def make_app(sfu: SFU, idle_timeout: float = 30.0) -> web.Application:
    sessions: dict[str, Session] = {}

    # --8<-- [start:join]
    async def join(request: web.Request) -> web.Response:
        session, participant_id = Session(), "p-" + secrets.token_urlsafe(16)
        token = secrets.token_urlsafe(24)  # the session's secret; not in URLs
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            room = sfu.get_room(request.match_info["room"])
            role = body.get("role", "participant")  # Role() rejects anything else
            session.participant = await room.join(participant_id, role, session.outbox)
        except (PysfuError, ValueError) as exc:  # room_full, ...; not JSON, bad role
            code = exc.code if isinstance(exc, PysfuError) else "bad_request"
            status = {"bad_request": 400, "room_not_found": 404}.get(code, 409)
            reply = {"error": code, "message": str(exc)}
            return web.json_response(reply, status=status)
        sessions[token] = session
        session.task = asyncio.create_task(supervise(token, session))
        reply = {"participant_id": participant_id, "token": token}
        return web.json_response(reply, status=201)
        # --8<-- [end:join]

    def find(request: web.Request) -> Session:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        session = sessions.get(token) if scheme.lower() == "bearer" else None
        if session is None:
            raise web.HTTPNotFound(text="no such session")
        return session

    # --8<-- [start:poll]
    async def poll(request: web.Request) -> web.Response:
        session = find(request)
        after = request.query.get("after", "0")
        if not after.isdigit():
            raise web.HTTPBadRequest(text="after must be a message number")
        session.messages = [m for m in session.messages if m["seq"] > int(after)]
        session.polls += 1
        try:
            if not session.messages and not session.ended:
                session.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(session.changed.wait(), POLL_SECONDS)
        finally:
            session.polls -= 1
            session.last_seen = asyncio.get_running_loop().time()
        if session.ended and not session.messages:
            raise web.HTTPGone(text="the session is over")
        return web.json_response({"messages": session.messages})

    async def send(request: web.Request) -> web.Response:
        session = find(request)
        if session.participant is not None:
            await deliver_json(session.participant, await request.text())
        return web.Response(status=204)
        # --8<-- [end:poll]

    # --8<-- [start:supervise]
    async def supervise(token: str, session: Session) -> None:
        """Leave for a client that stopped polling; forget the session once over."""
        participant, loop = session.participant, asyncio.get_running_loop()
        assert participant is not None
        while not participant.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(participant.wait_closed(), 1.0)
            if not session.polls and loop.time() - session.last_seen > idle_timeout:
                await participant.leave("stopped polling")
        session.ended = True
        session.changed.set()  # a waiting poll returns what is left, then 410
        await asyncio.sleep(idle_timeout)
        sessions.pop(token, None)
        # --8<-- [end:supervise]

    app = web.Application()
    app.router.add_post("/rooms/{room}/join", join)
    app.router.add_get("/poll", poll)
    app.router.add_post("/send", send)
    app.on_shutdown.append(lambda _: sfu.close())
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pysfu over HTTP long-polling")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--room", action="append", help="a room to serve; repeatable")
    parser.add_argument("--max-participants", type=int, default=1)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--ice-address", action="append", help="ICE host address")
    args = parser.parse_args(argv)
    ice = IceConfig(host_addresses=tuple(args.ice_address or ()) or None)
    sfu = SFU(SFUConfig(ice=ice))
    for name in args.room or ["demo"]:  # the only rooms: clients create none
        sfu.create_room(name, max_participants=args.max_participants)
    print(f"rooms {', '.join(sfu.rooms)} on http://{args.bind}:{args.port}", flush=True)
    app = make_app(sfu, args.idle_timeout)
    web.run_app(app, host=args.bind, port=args.port, print=None)


if __name__ == "__main__":
    main()
