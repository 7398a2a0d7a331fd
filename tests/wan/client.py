"""An aiortc participant of examples/ws_sfu.py, run inside a WAN bed namespace.

    python -m tests.wan.client --base http://10.77.0.1:8080 --address 10.77.0.2 \\
        --publish                      # creates a room as host, prints its link
    python -m tests.wan.client --join-url URL --address 10.77.0.3   # a viewer
    python -m tests.wan.client --p2p-listen 8081 --address 10.77.0.3  # P2P viewer
    python -m tests.wan.client --p2p-viewer http://10.77.0.3:8081/offer \
        --address 10.77.0.2                                # P2P publisher

Prints one JSON object per line: first ``{"join_url": ...}`` (host only), then
every second a report: for a publisher the video bytes its sender sent and
the REMB, NACK and PLI packets it received; for a viewer the video frames it
decoded with the publisher's pattern, its freezes and the NACKs and PLIs it
sent. Runs until SIGTERM.
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
from aiohttp import web
from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from pysfu._aiortc import configure_ice

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


class ViewerMeter:
    """Decoded frames of the viewer, sampled every 50 ms: freezes (no new
    frame for :data:`FREEZE_GAP` s or more) and the NACKs/PLIs it sent."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.frames = 0
        self.freezes = 0
        self.freeze_seconds = 0.0
        self.nacks = 0
        self.plis = 0
        self._last_frame_at: float | None = None
        self._in_freeze = False
        self._hooked: set[int] = set()

    def sample(self, now: float) -> None:
        frames = sum(
            len(t.patterns) for t in self.peer.received.values() if t.kind == "video"
        )
        if frames != self.frames:
            if self._in_freeze and self._last_frame_at is not None:
                self.freeze_seconds += now - self._last_frame_at
            self.frames, self._last_frame_at, self._in_freeze = frames, now, False
        elif (
            self._last_frame_at is not None
            and not self._in_freeze
            and now - self._last_frame_at >= FREEZE_GAP
        ):
            self._in_freeze = True
            self.freezes += 1
        for transceiver in self.peer.pc.getTransceivers():
            self._hook(transceiver.receiver)

    def _hook(self, receiver: Any) -> None:
        if id(receiver) in self._hooked:
            return
        self._hooked.add(id(receiver))
        send_nack, send_pli = receiver._send_rtcp_nack, receiver._send_rtcp_pli

        async def nack(media_ssrc: int, lost: list[int]) -> None:
            self.nacks += 1
            await send_nack(media_ssrc, lost)

        async def pli(media_ssrc: int) -> None:
            self.plis += 1
            await send_pli(media_ssrc)

        receiver._send_rtcp_nack, receiver._send_rtcp_pli = nack, pli

    def report(self, now: float) -> dict[str, Any]:
        ongoing = (
            now - self._last_frame_at
            if self._in_freeze and self._last_frame_at is not None
            else 0.0
        )
        return {
            "frames": self.frames,
            "freezes": self.freezes,
            "freeze_seconds": round(self.freeze_seconds + ongoing, 3),
            "nacks_sent": self.nacks,
            "plis_sent": self.plis,
        }


#: A gap between decoded frames this long (s) counts as a freeze.
FREEZE_GAP = 0.5


async def join_room(http: aiohttp.ClientSession, args: argparse.Namespace) -> Peer:
    """Join examples/ws_sfu.py's room (creating it as host when publishing)."""
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
        peer = publishing_peer(grant["participant_id"], args.address)
    else:
        _, grant = await join(http, args.join_url)
        peer = viewing_peer(grant["participant_id"], args.address)
    return peer.attach(await WsClient.connect(http, grant))


def publishing_peer(name: str, address: str) -> Peer:
    return Peer(
        name,
        PUBLISHER_CODE,
        video=DetailedVideoTrack(PUBLISHER_CODE),
        ice_addresses=[address],
    )


def viewing_peer(name: str, address: str) -> Peer:
    return Peer(
        name,
        VIEWER_CODE,
        publish_video=False,
        publish_audio=False,
        ice_addresses=[address],
    )


async def call_directly(http: aiohttp.ClientSession, args: argparse.Namespace) -> Peer:
    """The P2P reference: offer to the viewer's ``--p2p-listen`` endpoint."""
    peer = publishing_peer("publisher", args.address)
    assert peer.video is not None and peer.audio is not None
    peer.pc.addTrack(peer.video)
    peer.pc.addTrack(peer.audio)
    configure_ice(peer.pc, host_addresses=[args.address])
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    for _ in range(120):  # the viewer may still be starting
        try:
            async with http.post(
                args.p2p_viewer, data=peer.pc.localDescription.sdp
            ) as response:
                answer = await response.text()
            break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.5)
    await peer.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return peer


async def answer_directly(address: str, port: int) -> tuple[Peer, web.AppRunner]:
    """The P2P reference's viewer: answers one offer POSTed to it."""
    peer = viewing_peer("viewer", address)

    async def offer(request: web.Request) -> web.Response:
        sdp = await request.text()
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        configure_ice(peer.pc, host_addresses=[address])
        await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        return web.Response(text=peer.pc.localDescription.sdp)

    app = web.Application()
    app.add_routes([web.post("/offer", offer)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return peer, runner


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runner: web.AppRunner | None = None
    async with aiohttp.ClientSession() as http:
        if args.p2p_listen:
            peer, runner = await answer_directly(args.address, args.p2p_listen)
        elif args.p2p_viewer:
            peer = await call_directly(http, args)
        else:
            peer = await join_room(http, args)
        counter: FeedbackCounter | None = None
        meter = None if args.publish or args.p2p_viewer else ViewerMeter(peer)
        started = last_report = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
            now = time.monotonic()
            if meter is not None:
                meter.sample(now)
            if now - last_report < 1.0:
                continue
            last_report = now
            report: dict[str, Any] = {"t": round(now - started, 2)}
            if meter is not None:
                report.update(meter.report(now))
            else:
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
            emit(report)
        await peer.close()
        if runner is not None:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", help="the server's URL (to create a room)")
    parser.add_argument("--join-url", help="a room's link (to join as a viewer)")
    parser.add_argument("--address", required=True, help="this namespace's address")
    parser.add_argument("--publish", action="store_true")
    parser.add_argument(
        "--p2p-listen", type=int, help="P2P viewer: take an offer on this port"
    )
    parser.add_argument("--p2p-viewer", help="P2P publisher: the viewer's offer URL")
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
