"""An aiortc participant of examples/ws_sfu.py, run inside a WAN bed namespace.

    python -m tests.wan.client --base http://10.77.0.1:8080 --address 10.77.0.2 \\
        --publish                      # creates a room as host, prints its link
    python -m tests.wan.client --join-url URL --address 10.77.0.3   # a viewer

Prints one JSON object per line: first ``{"join_url": ...}`` (host only), then
every second a report: for a publisher the video bytes its sender sent and
the REMB, NACK and PLI packets it received; for a viewer the video frames it
decoded with the publisher's pattern. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from ..peers import HEIGHT, WIDTH, PatternVideoTrack, Peer
from ..ws_client import WsClient, create_room, join

PUBLISHER_CODE, VIEWER_CODE = 1, 2


class DetailedVideoTrack(PatternVideoTrack):
    """The pattern (code, counter) on top; moving fine noise below it, so the
    encoder needs all the bitrate it is given (a flat picture would not
    fill a 500 kbit/s link)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        rng = np.random.default_rng(7)
        self._texture = rng.integers(0, 256, (HEIGHT // 2, WIDTH * 2, 3), np.uint8)

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        image = frame.to_ndarray(format="rgb24")
        shift = (self.counter * 3) % WIDTH
        image[HEIGHT // 2 :] = self._texture[:, shift : shift + WIDTH]
        moving = av.VideoFrame.from_ndarray(image, format="rgb24")
        moving.pts, moving.time_base = frame.pts, frame.time_base
        return moving


class FeedbackCounter:
    """Counts the RTCP feedback a publisher's video sender receives."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.remb: int | None = None
        self.nacks = 0
        self.nacked_packets = 0
        self.plis = 0
        original = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                with contextlib.suppress(ValueError):
                    self.remb = unpack_remb_fci(packet.fci)[0]
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                self.plis += 1
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacks += 1
                self.nacked_packets += len(packet.lost)
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def video_sender_stats(peer: Peer) -> tuple[RTCRtpSender | None, int]:
    for transceiver in peer.pc.getTransceivers():
        sender = transceiver.sender
        if sender.track is not None and sender.track.kind == "video":
            for stat in (await sender.getStats()).values():
                if stat.type == "outbound-rtp":
                    return sender, int(stat.bytesSent)
            return sender, 0
    return None, 0


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with aiohttp.ClientSession() as http:
        if args.publish:
            for _ in range(120):  # the server may still be starting
                try:
                    _, room = await create_room(http, args.base)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.5)
            join_url = room["join_url"]
            _, grant = await join(http, join_url, role="host")
            emit({"join_url": join_url})
            peer = Peer(
                grant["participant_id"],
                PUBLISHER_CODE,
                video=DetailedVideoTrack(PUBLISHER_CODE),
                ice_addresses=[args.address],
            )
        else:
            _, grant = await join(http, args.join_url)
            peer = Peer(
                grant["participant_id"],
                VIEWER_CODE,
                publish_video=False,
                publish_audio=False,
                ice_addresses=[args.address],
            )
        client = WsClient(
            await http.ws_connect(grant["ws_url"]), grant["ice"]["password"]
        )
        peer.attach(client)
        counter: FeedbackCounter | None = None
        started = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            report: dict[str, Any] = {"t": round(time.monotonic() - started, 2)}
            if args.publish:
                sender, sent = await video_sender_stats(peer)
                if sender is not None and counter is None:
                    counter = FeedbackCounter(sender)
                report["video_bytes_sent"] = sent
                if counter is not None:
                    report.update(
                        remb=counter.remb,
                        nacks=counter.nacks,
                        nacked_packets=counter.nacked_packets,
                        plis=counter.plis,
                    )
            else:
                videos = [t for t in peer.received.values() if t.kind == "video"]
                report["frames"] = sum(
                    sum(1 for code, _ in t.patterns if code == PUBLISHER_CODE)
                    for t in videos
                )
            emit(report)
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", help="the server's URL (to create a room)")
    parser.add_argument("--join-url", help="a room's link (to join as a viewer)")
    parser.add_argument("--address", required=True, help="this namespace's address")
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
