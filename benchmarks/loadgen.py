"""The load generator: one publisher and N subscribers in one asyncio process.

The publisher is a plain aiortc peer sending VP8 640x360 at 30 fps and Opus.
Its encoder target is pinned to ``bitrate``: the publisher applies it itself
from the start and every REMB the server sends is rewritten to that value
before aiortc applies it, so both server modes get the same input whatever
their bandwidth estimators say.

Subscribers must stay cheap, so they never decode: each received track's
receiver is taken over with pysfu's own seam (``RtpTap`` and
``take_over_receiver``, as :class:`pysfu.Participant` does for publishers) and
only counts packets and sequence numbers. Every second each subscriber sends
a REMB of ``bitrate`` for its video, as a browser would; in relay mode it sets
the target of the server's per-subscriber encoder (aiortc's default is only
500 kbit/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription
from linejson import HOST, ROOM, LineChannel
from synthetic import MovingTextureTrack, ToneTrack

from pysfu._aiortc import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpOutput,
    RtpPacket,
    RtpTap,
    configure_ice,
    pack_remb_fci,
    rtcp_ssrc_of,
    take_over_receiver,
    unpack_remb_fci,
)


class ClientPeer:
    """A client connection that answers every offer the server sends."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        #: Resolves when the peer is usable (see subclasses), fails on errors.
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.problems: list[str] = []
        self._channel: LineChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def connect(self, port: int) -> None:
        self._channel = await LineChannel.connect(port)
        await self._channel.send(
            {"type": "hello", "room": ROOM, "id": self.name, "role": self.role}
        )
        self._task = asyncio.create_task(self._signalling())

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self.name} not ready after {timeout:.0f} s "
                f"(connection {self.pc.connectionState})"
            ) from None

    def fail(self, problem: str) -> None:
        if self._closing:
            return
        self.problems.append(problem)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.name}: {problem}"))

    async def _signalling(self) -> None:
        assert self._channel is not None
        try:
            while (message := await self._channel.receive()) is not None:
                kind = message.get("type")
                if kind == "offer":
                    await self._answer(message["sdp"])
                elif kind in ("error", "room-closed"):
                    self.fail(f"server said {message}")
            self.fail("signalling connection closed")
        except Exception as exc:  # surfaced through ready/problems
            self.fail(f"signalling failed: {exc!r}")

    async def _answer(self, sdp: str) -> None:
        assert self._channel is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.prepare_answer(sdp)
        configure_ice(self.pc, host_addresses=[HOST])
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._channel.send(
            {"type": "answer", "sdp": self.pc.localDescription.sdp}
        )

    def prepare_answer(self, offer_sdp: str) -> None:
        """Adjust transceivers between applying an offer and answering it."""

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.on_connected()
        elif state in ("failed", "closed"):
            self.fail(f"connection {state}")

    def on_connected(self) -> None:
        """Called when the peer connection reaches ``connected``."""

    async def close(self) -> None:
        self._closing = True
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.send({"type": "leave"})
            await self._channel.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pc.close()
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self.ready.exception()  # retrieved: no "never retrieved" warning


def pin_remb(sender: RTCRtpSender, bitrate: int) -> None:
    """Make ``sender`` treat every REMB it receives as ``bitrate``."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                _, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            packet = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=packet.ssrc,
                media_ssrc=packet.media_ssrc,
                fci=pack_remb_fci(bitrate, ssrcs),
            )
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


class Publisher(ClientPeer):
    """The host: publishes video and audio on the slots the server offers."""

    def __init__(self, bitrate: int) -> None:
        super().__init__("publisher", "host")
        self.bitrate = bitrate
        self.tracks: dict[str, MediaStreamTrack] = {
            "video": MovingTextureTrack(),
            "audio": ToneTrack(),
        }
        self.senders: dict[str, RTCRtpSender] = {}
        self._pin_task: asyncio.Task[None] | None = None

    def prepare_answer(self, offer_sdp: str) -> None:
        for media in SessionDescription.parse(offer_sdp).media:
            kind = media.kind
            if media.direction != "recvonly" or kind in self.senders:
                continue
            if kind not in self.tracks:
                continue
            transceiver = next(
                t for t in self.pc.getTransceivers() if t.mid == media.rtp.muxId
            )
            transceiver.sender.replaceTrack(self.tracks[kind])
            transceiver.direction = "sendonly"
            self.senders[kind] = transceiver.sender
            if kind == "video":
                pin_remb(transceiver.sender, self.bitrate)

    def on_connected(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        if self._pin_task is None:
            self._pin_task = asyncio.create_task(self._pin_bitrate())

    async def _pin_bitrate(self) -> None:
        """Apply ``bitrate`` from the start instead of waiting for a server REMB.

        aiortc ignores a REMB until the encoder exists, so repeat it; an
        unchanged target leaves the encoder alone.
        """
        sender = self.senders["video"]
        while True:
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=0,
                media_ssrc=0,
                fci=pack_remb_fci(self.bitrate, [sender._ssrc]),
            )
            await sender._handle_rtcp_packet(remb)
            await asyncio.sleep(0.5)

    async def sent(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes sent so far, per kind."""
        totals: dict[str, tuple[int, int]] = {}
        for kind, sender in self.senders.items():
            for stats in (await sender.getStats()).values():
                if stats.type == "outbound-rtp":
                    totals[kind] = (stats.packetsSent, stats.bytesSent)
        return totals

    async def close(self) -> None:
        if self._pin_task is not None:
            self._pin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pin_task
        for track in self.tracks.values():
            track.stop()
        await super().close()


@dataclass
class StreamCount:
    """What one subscriber received on one SSRC, without decoding anything."""

    kind: str
    packets: int = 0
    octets: int = 0
    first: int = -1
    highest: int = -1  # extended sequence number (wraps unrolled)

    def add(self, sequence_number: int, size: int) -> None:
        if self.highest < 0:
            self.first = self.highest = sequence_number
        else:
            delta = (sequence_number - self.highest) & 0xFFFF
            if delta < 0x8000:  # newer; older packets are late or repeated
                self.highest += delta
        self.packets += 1
        self.octets += size

    def copy(self) -> StreamCount:
        return StreamCount(
            self.kind, self.packets, self.octets, self.first, self.highest
        )


async def _ignore_rtcp(_packet: Any) -> None:
    """Subscribers have no use for the server's sender reports."""


class Subscriber(ClientPeer):
    """A participant that receives the host's tracks and only counts packets."""

    def __init__(self, name: str, bitrate: int) -> None:
        super().__init__(name, "participant")
        self.bitrate = bitrate
        self.streams: dict[int, StreamCount] = {}
        self._taps: dict[int, RtpTap] = {}
        self._video: list[tuple[RTCRtpTransceiver, set[int]]] = []
        self._remb_task: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(
            t for t in self.pc.getTransceivers() if t.receiver.track is track
        )
        receiver = transceiver.receiver
        transport = receiver.transport
        tap = self._taps.get(id(transport))
        if tap is None:
            tap = self._taps[id(transport)] = RtpTap(transport)
        ssrcs: set[int] = set()
        if transceiver.kind == "video":
            self._video.append((transceiver, ssrcs))
        take_over_receiver(receiver, lambda _parameters: None, _ignore_rtcp)
        tap.attach(receiver, self._sink(transceiver.kind, ssrcs))

    def _sink(
        self, kind: str, ssrcs: set[int]
    ) -> Callable[[RtpPacket, bytes, int], None]:
        streams = self.streams

        def sink(packet: RtpPacket, data: bytes, _arrival_time_ms: int) -> None:
            count = streams.get(packet.ssrc)
            if count is None:
                count = streams[packet.ssrc] = StreamCount(kind)
                ssrcs.add(packet.ssrc)
                self._check_ready()
            count.add(packet.sequence_number, len(data))

        return sink

    def _check_ready(self) -> None:
        kinds = {count.kind for count in self.streams.values()}
        if {"audio", "video"} <= kinds and not self.ready.done():
            self.ready.set_result(None)

    def on_connected(self) -> None:
        if self._remb_task is None:
            self._remb_task = asyncio.create_task(self._send_remb())

    async def _send_remb(self) -> None:
        while True:
            for transceiver, ssrcs in self._video:
                if not ssrcs:
                    continue
                packet = RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=rtcp_ssrc_of(transceiver),
                    media_ssrc=0,
                    fci=pack_remb_fci(self.bitrate, sorted(ssrcs)),
                )
                RtpOutput(transceiver.receiver.transport).send_rtcp(bytes(packet))
            await asyncio.sleep(1.0)

    def unrouted(self) -> int:
        return sum(tap.unrouted + tap.parse_errors for tap in self._taps.values())

    async def close(self) -> None:
        if self._remb_task is not None:
            self._remb_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._remb_task
        for tap in self._taps.values():
            tap.detach_all()
        await super().close()


@dataclass
class LoadSnapshot:
    """Counters of the load generator at one instant."""

    time: float
    cpu_seconds: float
    sent: dict[str, tuple[int, int]]
    streams: dict[tuple[str, int], StreamCount] = field(default_factory=dict)


@dataclass
class LoadWindow:
    """What happened between two snapshots."""

    seconds: float
    client_cpu_seconds: float
    received_packets: int
    expected_packets: int
    received_video_octets: int
    sent_packets: dict[str, int]
    sent_octets: dict[str, int]

    @staticmethod
    def between(before: LoadSnapshot, after: LoadSnapshot) -> LoadWindow:
        received = expected = video_octets = 0
        for key, now in after.streams.items():
            then = before.streams.get(key)
            if then is None:
                then = StreamCount(now.kind, 0, 0, now.first, now.first - 1)
            received += now.packets - then.packets
            expected += now.highest - then.highest
            if now.kind == "video":
                video_octets += now.octets - then.octets
        kinds = after.sent.keys()
        return LoadWindow(
            seconds=after.time - before.time,
            client_cpu_seconds=after.cpu_seconds - before.cpu_seconds,
            received_packets=received,
            expected_packets=expected,
            received_video_octets=video_octets,
            sent_packets={
                k: after.sent[k][0] - before.sent.get(k, (0, 0))[0] for k in kinds
            },
            sent_octets={
                k: after.sent[k][1] - before.sent.get(k, (0, 0))[1] for k in kinds
            },
        )


class LoadGenerator:
    """The publisher and ``subscribers`` subscribers of one benchmark case."""

    def __init__(self, port: int, subscribers: int, bitrate: int) -> None:
        self.port = port
        self.publisher = Publisher(bitrate)
        self.subscribers = [
            Subscriber(f"subscriber-{i + 1}", bitrate) for i in range(subscribers)
        ]
        self._process = psutil.Process()

    async def start(self, timeout: float = 45.0) -> None:
        """Connect the publisher, then every subscriber; return once all receive."""
        await self.publisher.connect(self.port)
        await self.publisher.wait_ready(timeout)
        for subscriber in self.subscribers:
            await subscriber.connect(self.port)
        await asyncio.gather(*(s.wait_ready(timeout) for s in self.subscribers))

    async def snapshot(self) -> LoadSnapshot:
        cpu = self._process.cpu_times()
        snapshot = LoadSnapshot(
            time=time.monotonic(),
            cpu_seconds=cpu.user + cpu.system,
            sent=await self.publisher.sent(),
        )
        for subscriber in self.subscribers:
            for ssrc, count in subscriber.streams.items():
                snapshot.streams[(subscriber.name, ssrc)] = count.copy()
        return snapshot

    def problems(self) -> list[str]:
        peers: list[ClientPeer] = [self.publisher, *self.subscribers]
        return [f"{p.name}: {problem}" for p in peers for problem in p.problems]

    async def close(self) -> None:
        peers: list[ClientPeer] = [*self.subscribers, self.publisher]
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
