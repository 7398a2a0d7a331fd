"""Stall benchmark: does the server drop peers for its own stalls?

Runs ``examples/ws_sfu.py`` as a subprocess, lets a host and ``--guests``
guests join one room with aiortc clients (this process), then stops the
server for ``--busy`` seconds of every ``--period`` (SIGSTOP/SIGCONT: to the
server, exactly a blocked event loop) for ``--seconds``. Reports the peers
the server dropped (``participant-left`` seen by the host; should be 0) and
the frames per second each guest decoded from the host during the stalls
and after them.

    python -m benchmarks.stall                      # 0.5 s of every 1 s, 60 s
    python -m benchmarks.stall --busy 0.7 --seconds 30 --json stall.json

Run it in a loopback-only namespace to keep other traffic out:
``unshare --net -- bash -c 'ip link set lo up && python -m benchmarks.stall'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from pysfu._aiortc import set_consent_timing
from tests.example_server import example_server  # the test suite's clients
from tests.peers import Peer
from tests.ws_client import WsClient, create_room, join


async def joined(
    http: aiohttp.ClientSession, join_url: str, role: str, code: int
) -> tuple[str, Peer, WsClient]:
    _, grant = await join(http, join_url, role=role)
    peer = Peer(grant["participant_id"], code)
    browser_like_consent(peer)
    ws = WsClient(await http.ws_connect(grant["ws_url"]), grant["ice"]["password"])
    await ws.hello(grant["signalling_token"])  # signalling needs its token
    peer.attach(ws)
    return grant["participant_id"], peer, ws


def browser_like_consent(peer: Peer) -> None:
    """Give a client a browser's consent tolerance (a check every 5 s,
    retransmitted, 30 s to answer): aioice's own sends each check once with
    a 0.5 s timeout, so with the server stopped half of each second the
    *client* would soon give up, which is not what this measures."""
    set_local = peer.pc.setLocalDescription

    async def set_local_description(description: Any = None) -> None:
        set_consent_timing(peer.pc, 5.0, 6)  # the agent exists by now
        await set_local(description)

    peer.pc.setLocalDescription = set_local_description  # type: ignore[method-assign]


def frames(peer: Peer, host: Peer) -> int:
    track = peer.track_from(host.name, "video")
    return 0 if track is None else track.frames


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    peers: list[Peer] = []
    server = example_server(f"--max-participants={args.guests}", *args.server_option)
    async with aiohttp.ClientSession() as http, server as base:
        try:
            _, room = await create_room(http, base)
            _, host, host_ws = await joined(http, room["join_url"], "host", 1)
            peers.append(host)
            guests = []
            for n in range(args.guests):
                _, guest, _ = await joined(http, room["join_url"], "participant", n + 2)
                peers.append(guest)
                guests.append(guest)
            for guest in guests:
                await asyncio.wait_for(guest.wait_video_from(host), 60)

            pid = base.process.pid
            start = [frames(g, host) for g in guests]
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                os.kill(pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(args.busy)
                finally:
                    os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(args.period - args.busy)
            stalled = time.monotonic() - began
            during = [frames(g, host) - s for g, s in zip(guests, start, strict=True)]

            after_start = [frames(g, host) for g in guests]
            await asyncio.sleep(args.after)
            after = [
                frames(g, host) - s for g, s in zip(guests, after_start, strict=True)
            ]
            dropped = sum(1 for m in host_ws.raw if m["type"] == "participant-left")
            return {
                "busy": args.busy,
                "period": args.period,
                "seconds": round(stalled, 1),
                "guests": args.guests,
                "peers_dropped": dropped,
                "connection_states": [p.pc.connectionState for p in peers],
                "fps_during_stalls": [round(f / stalled, 1) for f in during],
                "fps_after": [round(f / args.after, 1) for f in after],
            }
        finally:
            for peer in peers:
                await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=float, default=0.5, help="seconds stopped")
    parser.add_argument("--period", type=float, default=1.0, help="every so often")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=5.0, help="then measure")
    parser.add_argument("--guests", type=int, default=2)
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="passed on to examples/ws_sfu.py, e.g. --server-option=--ice-udp-port=0",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not 0 < args.busy < args.period:
        parser.error("--busy must be between 0 and --period")
    result = asyncio.run(measure(args))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
