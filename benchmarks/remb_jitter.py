"""REMB under event-loop jitter: kernel receive timestamps against Python's.

pysfu estimates each video publisher's uplink from abs-send-time and the
arrival time of each packet (REMB). Taken in Python, an arrival time is when
the event loop got to the packet: on a busy server that loop's jitter reads
as network queueing and the estimate collapses (issue 14: 140-490 kbit/s on
a clean link). Taken by the kernel (``SO_TIMESTAMPNS``, pysfu's default), it
is when the packet arrived.

Runs ``examples/ws_sfu.py`` as a subprocess, a host (aiortc client, this
process: moving pattern + tone) publishes alone in a room over loopback,
and the server is stopped (SIGSTOP/SIGCONT, exactly a blocked event loop)
for a random ``--min-ms``-``--max-ms`` every ``--period`` s. Reported per
mode: the REMB the publisher received (median and minimum over the last
``--seconds`` minus a warm-up) and the publisher's send rate. ``python``
mode starts the server with ``PYSFU_KERNEL_TIMESTAMPS=0`` (arrival times
taken when the loop reads each datagram).

    python -m benchmarks.remb_jitter [--seconds 40] [--json FILE]

Run it in a loopback-only namespace to keep other traffic out:
``unshare --net -- bash -c 'ip link set lo up && python -m benchmarks.remb_jitter'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from tests.example_server import example_server  # the test suite's clients
from tests.peers import Peer
from tests.ws_client import WsClient, create_room, join

from .stall import browser_like_consent


class NoiseVideoTrack(VideoStreamTrack):
    """30 fps of 320x240 noise: the encoder needs all the bitrate it is
    allowed (aiortc's VP8: 250 kbit/s to 1.5 Mbit/s, following REMB), so its
    send rate shows what the REMB lets it send."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self.images = [
            rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(16)
        ]
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = self.images[self.counter % len(self.images)]
        self.counter += 1
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def record_remb(peer: Peer) -> list[tuple[float, int]]:
    """(time, bit/s) of every REMB the publisher's video sender receives."""
    received: list[tuple[float, int]] = []
    for sender in peer.pc.getSenders():
        if sender.kind != "video":
            continue
        stock = sender._handle_rtcp_packet

        async def handle(packet: Any, stock: Any = stock) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, _ = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    received.append((time.monotonic(), bitrate))
            await stock(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
    return received


async def video_bytes_sent(peer: Peer) -> int:
    stats = await peer.pc.getStats()
    return sum(
        s.bytesSent
        for s in stats.values()
        if s.type == "outbound-rtp" and s.kind == "video"
    )


async def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    saved = os.environ.get("PYSFU_KERNEL_TIMESTAMPS")
    os.environ["PYSFU_KERNEL_TIMESTAMPS"] = "0" if mode == "python" else "1"
    rng = random.Random(args.seed)
    try:
        server = example_server("--max-participants=2")
        async with aiohttp.ClientSession() as http, server as base:
            _, room = await create_room(http, base)
            _, grant = await join(http, room["join_url"], role="host")
            peer = Peer(grant["participant_id"], 1, video=NoiseVideoTrack())
            browser_like_consent(peer)
            ws = WsClient(
                await http.ws_connect(grant["ws_url"]), grant["ice"]["password"]
            )
            await ws.hello(grant["signalling_token"])
            peer.attach(ws)
            try:
                while not any(s.transport for s in peer.pc.getSenders()):
                    await asyncio.sleep(0.1)
                while peer.pc.connectionState != "connected":
                    await asyncio.sleep(0.1)
                rembs = record_remb(peer)
                pid = base.process.pid
                if args.server_cpu is not None:  # the load hits the server only
                    os.sched_setaffinity(pid, {args.server_cpu})
                began = time.monotonic()
                counted_from = began + args.warmup
                sent_at_start: int | None = None
                stopped = 0.0
                while time.monotonic() - began < args.seconds:
                    if sent_at_start is None and time.monotonic() >= counted_from:
                        sent_at_start = await video_bytes_sent(peer)
                        counted_from = time.monotonic()
                    busy = rng.uniform(args.min_ms, args.max_ms) / 1e3
                    if args.max_ms:
                        os.kill(pid, signal.SIGSTOP)
                        try:
                            await asyncio.sleep(busy)
                        finally:
                            os.kill(pid, signal.SIGCONT)
                        stopped += busy
                    await asyncio.sleep(max(0.0, args.period - busy))
                ended = time.monotonic()
                sent = await video_bytes_sent(peer) - (sent_at_start or 0)
                counted = [b for t, b in rembs if t >= counted_from]
                return {
                    "mode": mode,
                    "stall_ms": [args.min_ms, args.max_ms],
                    "period_s": args.period,
                    "stopped_share": round(stopped / (ended - began), 3),
                    "seconds_counted": round(ended - counted_from, 1),
                    "rembs": len(counted),
                    "remb_kbps_median": (
                        round(statistics.median(counted) / 1e3) if counted else None
                    ),
                    "remb_kbps_mean": (
                        round(statistics.mean(counted) / 1e3) if counted else None
                    ),
                    "remb_kbps_min": round(min(counted) / 1e3) if counted else None,
                    "share_under_1mbps": (
                        round(sum(b < 1e6 for b in counted) / len(counted), 2)
                        if counted
                        else None
                    ),
                    "remb_kbps_last": round(counted[-1] / 1e3) if counted else None,
                    "publisher_kbps": round(sent * 8 / (ended - counted_from) / 1e3),
                }
            finally:
                await peer.close()
    finally:
        if saved is None:
            os.environ.pop("PYSFU_KERNEL_TIMESTAMPS", None)
        else:
            os.environ["PYSFU_KERNEL_TIMESTAMPS"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=0.1, help="a stall every")
    parser.add_argument("--min-ms", type=float, default=0.0)
    parser.add_argument("--max-ms", type=float, default=60.0)
    parser.add_argument("--modes", default="kernel,python")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server-cpu",
        type=int,
        help="pin the server's event loop to this CPU and this process (the"
        " publisher) to the others: with e.g. `taskset -c 1 stress-ng --cpu 2`"
        " the load then slows the server, not the publisher's encoder",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.server_cpu is not None:
        others = os.sched_getaffinity(0) - {args.server_cpu}
        if others:
            os.sched_setaffinity(0, others)
    rows = []
    for _ in range(args.repeat):
        for mode in args.modes.split(","):
            row = asyncio.run(measure(mode, args))
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
