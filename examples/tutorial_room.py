"""The video room of the tutorial (docs/tutorial.md): one room, two people.

    python examples/tutorial_room.py

then open http://127.0.0.1:8080 in two browser tabs. The page is
tutorial_room.html and tutorial_room.js, next to this file; the page
imports pysfu's browser client, pysfu-client.js, which the server serves
from the installed package. The lines marked
``--8<--`` delimit the parts that the tutorial shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# --8<-- [start:imports]
from aiohttp import web

from pysfu import SFU, IceConfig, SFUConfig
from pysfu.admission import Admission
from pysfu.signalling.join import browser_client_path, join_handler
from pysfu.signalling.websocket import websocket_session

# --8<-- [end:imports]

HERE = Path(__file__).resolve().parent


def make_app(ice_addresses: tuple[str, ...] | None = None) -> web.Application:
    # --8<-- [start:sfu]
    sfu = SFU(SFUConfig(ice=IceConfig(host_addresses=ice_addresses)))
    sfu.create_room("lobby", max_participants=2)
    admission = Admission(sfu)
    # --8<-- [end:sfu]

    # --8<-- [start:join]
    # POST /api/rooms/lobby/join admits one person: its answer holds the
    # participant id, the ICE password of the server's side of its
    # connection and a signalling token (409 "room_full" when two are in).
    join = join_handler(admission)
    # --8<-- [end:join]

    # --8<-- [start:signalling]
    async def signalling(request: web.Request) -> web.StreamResponse:
        participant_id = request.match_info["participant_id"]
        return await websocket_session(request, admission, participant_id)

    # --8<-- [end:signalling]

    # --8<-- [start:app]
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "tutorial_room.html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "tutorial_room.js")

    async def client(request: web.Request) -> web.FileResponse:
        # pysfu's browser client: the protocol in one ES module
        return web.FileResponse(browser_client_path())

    async def close_rooms(app: web.Application) -> None:
        await sfu.close()

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/room.js", script)
    app.router.add_get("/pysfu-client.js", client)
    app.router.add_post("/api/rooms/{room}/join", join)
    app.router.add_get("/ws/{participant_id}", signalling)
    app.on_shutdown.append(close_rooms)
    return app
    # --8<-- [end:app]


# --8<-- [start:main]
def main() -> None:
    parser = argparse.ArgumentParser(description="the pysfu tutorial's video room")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--ice-address",
        action="append",
        help="address for ICE host candidates (default: every interface but lo)",
    )
    args = parser.parse_args()
    ice_addresses = tuple(args.ice_address) if args.ice_address else None
    print(f"open http://127.0.0.1:{args.port} in two tabs", flush=True)
    web.run_app(make_app(ice_addresses), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
# --8<-- [end:main]
