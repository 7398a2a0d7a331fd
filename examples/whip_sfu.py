"""The WebSocket room app of ws_sfu.py plus WHIP and WHEP on the same rooms.

    python examples/whip_sfu.py

serves everything examples/ws_sfu.py serves (rooms, join API, WebSocket,
browser client) and, on the same SFU:

- ``POST /whip/{room}``: publish into a room with a WHIP client (OBS,
  GStreamer's ``whipclientsink``, the page at ``/publish``);
- ``POST /whep/{room}``: watch a room with a WHEP client;
- ``PATCH``/``DELETE`` on the session resource each returns.

The bearer token is a host key (WHIP: create the room and publish as its
host) or a join credential (the ``ice.password`` of ``POST
/api/rooms/{room}/join``). See docs/how-to/whip.md. Options and environment
variables are those of ws_sfu.py (``--help``); ``--allowed-origin`` also
governs which pages may call the WHIP/WHEP resources (CORS).
"""

from __future__ import annotations

import argparse
import logging
from typing import cast

from aiohttp import web

from pysfu import Participant
from pysfu.admission import Admission
from pysfu.app import server as ws_sfu
from pysfu.signalling.whip import WhipEndpoint

logger = logging.getLogger("whip_sfu")


class WhipSfuApp(ws_sfu.SfuApp):
    """ws_sfu's app with the WHIP/WHEP endpoint on the same rooms."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        if not self.rooms.supports_client_offers:
            # a WHIP session answers the client's offer where its peer
            # connection is: rooms in worker processes cannot
            raise SystemExit("whip_sfu.py: --workers is not supported")
        # rooms that take client offers join pysfu.Participants
        admission = cast(Admission[Participant], self.admission)
        # --8<-- [start:endpoint]
        self.whip = WhipEndpoint(
            admission,
            host_keys=self.host_keys,
            ice_servers=self.client_ice_servers,
            turn_secret=args.turn_secret,
            turn_ttl=args.turn_ttl,
            allowed_origins=args.allowed_origin or None,
            room_size=args.max_participants,
        )
        # --8<-- [end:endpoint]

    def application(self) -> web.Application:
        app = super().application()
        app.add_routes(self.whip.routes())
        app.add_routes([web.get("/publish", self.publish_page)])
        return app

    async def publish_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(ws_sfu.STATIC / "whip.html")

    async def shutdown(self, app: web.Application) -> None:
        await self.whip.close()
        await super().shutdown(app)


def main(argv: list[str] | None = None) -> None:
    args = ws_sfu.parse_args(argv)
    ws_sfu.setup_logging(args.log_level)
    try:
        server = WhipSfuApp(args)
    except (ValueError, TypeError) as exc:  # a setting IceConfig refuses
        raise SystemExit(f"whip_sfu.py: {exc}") from exc
    url = f"http://{args.bind}:{args.port}"
    print(f"pysfu WHIP/WHEP SFU on {url}", flush=True)
    ws_sfu.print_media_addresses(server)
    if server.generated_key is not None:
        key = server.generated_key
        print(f"generated host key: {key}", flush=True)
        print(f"publish with WHIP: {url}/publish#key={key}", flush=True)
        print(f"WHIP endpoint: {url}/whip/<room>, bearer token {key}", flush=True)
    ws_sfu.serve(server.application(), args, server.metrics_application())


if __name__ == "__main__":
    main()
