"""The code of docs/how-to/cluster.md: one node of a cluster of pysfu servers.

Every node runs this app with its own URL; they share one Redis. A join that
reaches a node which does not hold the room is redirected (HTTP 307) to the
node that does, or, for a new room, to the least loaded live node.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pysfu import SFU, PysfuError, RoleName, RoomClosedEvent, RoomEvent
from pysfu.admission import Admission
from pysfu.cluster import ClusterNode, NodeFenced
from pysfu.signalling.websocket import websocket_session


# --8<-- [start:node]
def make_node_app(sfu: SFU, node: ClusterNode) -> web.Application:
    """One node: joins for its own rooms, redirects for the others."""
    admission = Admission(sfu)
    closing: set[asyncio.Task[None]] = set()

    def release_when_closed(room_id: str) -> None:
        def on_event(event: RoomEvent) -> None:
            if isinstance(event, RoomClosedEvent):
                task = asyncio.get_running_loop().create_task(
                    node.release_room(room_id)
                )
                closing.add(task)
                task.add_done_callback(closing.discard)

        sfu.get_room(room_id).add_listener(on_event)

    def room_lost(room_id: str) -> None:
        # another node took the room while this one was cut off: its
        # clients rejoin there, through any node
        if room_id in sfu.rooms:
            task = asyncio.get_running_loop().create_task(sfu.close_room(room_id))
            closing.add(task)
            task.add_done_callback(closing.discard)

    node.on_room_lost = room_lost

    async def join(request: web.Request) -> web.Response:
        room_id = request.match_info["room"]
        home = await node.place_room(room_id)
        if home.id != node.id:
            # same method, same body, one more round trip
            raise web.HTTPTemporaryRedirect(home.url + request.path_qs)
        try:
            if room_id not in sfu.rooms:
                claim = await node.claim_room(room_id)
                if not claim.mine:  # another node won the race for it
                    owner = await node.node(claim.owner)
                    if owner is None:
                        return web.json_response({"error": "retry"}, status=503)
                    raise web.HTTPTemporaryRedirect(owner.url + request.path_qs)
                sfu.create_room(room_id, max_participants=4)
                release_when_closed(room_id)
            if not await node.holds(room_id):  # the epoch moved on
                return web.json_response({"error": "retry"}, status=503)
            role: RoleName = (
                "host" if request.query.get("role") == "host" else "participant"
            )
            grant = admission.admit(room_id, role, host_authorized=role == "host")
        except NodeFenced:
            return web.json_response({"error": "node_fenced"}, status=503)
        except PysfuError as exc:
            return web.json_response({"error": exc.code}, status=exc.http_status)
        return web.json_response(
            {
                "participant_id": grant.participant_id,
                "ice_password": grant.credentials.password,
                "signalling_token": grant.signalling_token,
                # signalling and media go to this node, whoever was asked
                "ws_url": f"{node.url}/ws/{grant.participant_id}",
            }
        )

    async def signalling(request: web.Request) -> web.StreamResponse:
        participant_id = request.match_info["participant_id"]
        return await websocket_session(request, admission, participant_id)

    app = web.Application()
    app.router.add_post("/join/{room}", join)
    app.router.add_get("/ws/{participant_id}", signalling)
    return app
    # --8<-- [end:node]


# --8<-- [start:start]
async def start_node(
    redis_url: str, public_url: str, sfu: SFU, host: str, port: int
) -> tuple[web.AppRunner, ClusterNode]:
    """Register in the cluster, then serve."""
    node = ClusterNode(
        redis_url,
        url=public_url,
        ttl=10.0,  # a dead node's rooms can be re-created after 10 s
        load=lambda: (
            len(sfu.rooms),
            sum(len(room.members) for room in sfu.rooms.values()),
        ),
    )
    await node.start()
    runner = web.AppRunner(make_node_app(sfu, node))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, node
    # --8<-- [end:start]
