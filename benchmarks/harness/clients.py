"""The load generator's clients for the three server modes.

A :class:`Member` is one person in a room. It may publish (pre-encoded VP8
and Opus from :mod:`clip`) and may receive; what it receives is never
decoded: each received track is diverted with pysfu's seam (``RtpTap`` and
``take_over_receiver``) into a :class:`Receiver`, which counts packets and
sequence numbers per SSRC, stamps the one-way delay of every video frame it
can match to the publisher's :class:`clip.SendLog`, and notes when the first
complete VP8 keyframe arrived.

How a member reaches the server depends on the mode (one :class:`Leg`, an
``RTCPeerConnection``, per connection):

- ``pysfu``: one connection per member, signalled over :mod:`linejson`; the
  server offers publishing slots and forwarded tracks, the client answers.
- ``relay`` (``server.py --mode relay``): one publishing connection, and one
  receiving connection per publisher it watches (``feed``); the server offers.
- ``janus``: the same split through the VideoRoom plugin; the client offers
  its publishing connection, Janus offers each subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from pysfu._aiortc import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpHeader,
    RtpOutput,
    RtpTap,
    configure_ice,
    pack_remb_fci,
    rtcp_ssrc_of,
    take_over_receiver,
)

from .clip import KEY_BYTES, Media, PacketTrack, SendLog, on_keyframe_request
from .counting import LoadSnapshot, StreamCount
from .janus import JanusError, JanusSession
from .linejson import HOST, LineChannel

KINDS = ("audio", "video")
#: Subscribers ask for this much video, as a browser's REMB would (it sets the
#: relay server's encoder target; forwarding servers pass it on or ignore it).
REMB_BITRATE = 1_000_000


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether an RTP payload starts a VP8 keyframe (RFC 7741 descriptor)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # not the start of partition 0
        return False
    index = 1
    if first & 0x80:  # X: extensions
        ext = payload[1]
        index = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            index += 2 if payload[index] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            index += 1
        if ext & 0x30:  # T or K
            index += 1
    return index < len(payload) and not payload[index] & 0x01


class Receiver:
    """What one member received, counted without decoding."""

    def __init__(self, log: SendLog | None = None) -> None:
        self.streams: dict[int, StreamCount] = {}
        self.log = log
        self.latencies: list[float] = []
        self.media = asyncio.Event()  # audio and video both arrived
        self.subscribed_at: float | None = None
        self.connected_at: float | None = None
        self.first_keyframe_at: float | None = None
        self._keyframe: tuple[int, int] | None = None  # (timestamp, next seq)
        self._video_ssrcs: list[set[int]] = []

    def sink(
        self, kind: str, ssrcs: set[int]
    ) -> Callable[[RtpHeader, bytes, int, float], None]:
        streams = self.streams

        def sink(packet: RtpHeader, data: bytes, _arrival_ms: int, _now: float) -> None:
            count = streams.get(packet.ssrc)
            if count is None:
                count = streams[packet.ssrc] = StreamCount(kind)
                ssrcs.add(packet.ssrc)
                if {c.kind for c in streams.values()} >= set(KINDS):
                    self.media.set()
            count.add(packet.sequence_number, len(data))
            if kind == "video":
                self._video(packet, time.monotonic())

        return sink

    def _video(self, packet: RtpHeader, now: float) -> None:
        if self.first_keyframe_at is None:
            self._track_keyframe(packet, now)
        if packet.marker and self.log is not None:
            delay = self.log.latency(packet.payload[-KEY_BYTES:], now)
            if delay is not None and 0 <= delay < 10:
                self.latencies.append(delay)

    def _track_keyframe(self, packet: RtpHeader, now: float) -> None:
        """Note when every packet of the first keyframe has arrived in order."""
        seq = packet.sequence_number
        if vp8_keyframe_start(packet.payload):
            self._keyframe = (packet.timestamp, seq)
        if self._keyframe is None:
            return
        timestamp, expected = self._keyframe
        if packet.timestamp != timestamp or seq != expected:
            self._keyframe = None  # a gap or another frame: wait for the next
            return
        if packet.marker:
            self.first_keyframe_at = now
        else:
            self._keyframe = (timestamp, (seq + 1) & 0xFFFF)

    def snapshot(self, prefix: str) -> dict[tuple[str, int], StreamCount]:
        return {(prefix, ssrc): c.copy() for ssrc, c in self.streams.items()}


async def _ignore_rtcp(_packet: Any, _now: float) -> None:
    """Receivers have no use for the server's sender reports."""


class Leg:
    """One ``RTCPeerConnection`` of a member.

    It publishes ``tracks`` and feeds what it receives to ``receiver``.
    """

    def __init__(
        self,
        name: str,
        tracks: dict[str, PacketTrack],
        receiver: Receiver | None,
    ) -> None:
        self.name = name
        self.tracks = tracks
        self.receiver = receiver
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.senders: dict[str, RTCRtpSender] = {}
        self.connected = asyncio.get_running_loop().create_future()
        self.problems: list[str] = []
        self._closing = False
        self._taps: dict[int, RtpTap] = {}
        self._video: list[tuple[RTCRtpTransceiver, set[int]]] = []
        self._remb_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("track", self._on_track)

    def fail(self, problem: str) -> None:
        if self._closing:
            return
        self.problems.append(problem)
        if not self.connected.done():
            self.connected.set_exception(RuntimeError(f"{self.name}: {problem}"))

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            if self.receiver is not None and self.receiver.connected_at is None:
                self.receiver.connected_at = time.monotonic()
            if not self.connected.done():
                self.connected.set_result(None)
            if self._remb_task is None and self.receiver is not None:
                self._remb_task = asyncio.create_task(self._send_remb())
        elif state in ("failed", "closed"):
            self.fail(f"connection {state}")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.receiver is None:
            return
        transceiver = next(
            t for t in self.pc.getTransceivers() if t.receiver.track is track
        )
        receiver = transceiver.receiver
        tap = self._taps.get(id(receiver.transport))
        if tap is None:
            tap = self._taps[id(receiver.transport)] = RtpTap(receiver.transport)
        ssrcs: set[int] = set()
        if transceiver.kind == "video":
            self._video.append((transceiver, ssrcs))
        take_over_receiver(receiver, lambda _parameters: None, _ignore_rtcp)
        tap.attach(receiver, self.receiver.sink(transceiver.kind, ssrcs))

    async def _send_remb(self) -> None:
        while True:
            for transceiver, ssrcs in self._video:
                if ssrcs:
                    packet = RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=rtcp_ssrc_of(transceiver),
                        media_ssrc=0,
                        fci=pack_remb_fci(REMB_BITRATE, sorted(ssrcs)),
                    )
                    RtpOutput(transceiver.receiver.transport).send_rtcp(bytes(packet))
            await asyncio.sleep(1.0)

    def attach_offered(self, offer_sdp: str) -> None:
        """After applying a server offer: publish on the slots it opened for us."""
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
            self._publishing(kind, transceiver.sender)

    def _publishing(self, kind: str, sender: RTCRtpSender) -> None:
        self.senders[kind] = sender
        on_keyframe_request(sender, self.tracks[kind])

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=offer_sdp, type="offer")
        )
        self.attach_offered(offer_sdp)
        configure_ice(self.pc, host_addresses=[HOST])
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def sent(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for kind, sender in self.senders.items():
            for stats in (await sender.getStats()).values():
                if stats.type == "outbound-rtp":
                    totals[kind] = (stats.packetsSent, stats.bytesSent)
        return totals

    async def close(self) -> None:
        self._closing = True
        if self._remb_task is not None:
            self._remb_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._remb_task
        for tap in self._taps.values():
            tap.detach_all()
        await self.pc.close()
        if self.connected.done() and not self.connected.cancelled():
            self.connected.exception()  # retrieved: no "never retrieved" warning
        else:
            self.connected.cancel()


class LineLeg(Leg):
    """A connection to ``server.py`` (pysfu or relay mode): the server offers."""

    def __init__(
        self,
        port: int,
        hello: dict[str, Any],
        tracks: dict[str, PacketTrack],
        receiver: Receiver | None,
    ) -> None:
        super().__init__(str(hello["id"]), tracks, receiver)
        self.port = port
        self.hello = hello
        self._channel: LineChannel | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._channel = await LineChannel.connect(self.port)
        if self.receiver is not None and self.receiver.subscribed_at is None:
            self.receiver.subscribed_at = time.monotonic()
        await self._channel.send(self.hello)
        self._task = asyncio.create_task(self._signalling())

    async def _signalling(self) -> None:
        assert self._channel is not None
        try:
            while (message := await self._channel.receive()) is not None:
                kind = message.get("type")
                if kind == "offer":
                    sdp = await self.answer(message["sdp"])
                    await self._channel.send({"type": "answer", "sdp": sdp})
                elif kind in ("error", "room-closed"):
                    self.fail(f"server said {message}")
            self.fail("signalling connection closed")
        except Exception as exc:  # surfaced through connected/problems
            self.fail(f"signalling failed: {exc!r}")

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
        await super().close()


class JanusPublisherLeg(Leg):
    """Publishes into a VideoRoom: the client offers, ``joinandconfigure``."""

    def __init__(
        self,
        session: JanusSession,
        room: int,
        feed: int,
        tracks: dict[str, PacketTrack],
    ) -> None:
        super().__init__(f"feed-{feed}", tracks, None)
        self.session = session
        self.room = room
        self.feed = feed
        self.handle = 0

    async def open(self) -> None:
        self.handle = await self.session.attach()
        for kind in KINDS:
            transceiver = self.pc.addTransceiver(
                self.tracks[kind], direction="sendonly"
            )
            self._publishing(kind, transceiver.sender)
        configure_ice(self.pc, host_addresses=[HOST])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        event = await self.session.message(
            self.handle,
            {
                "request": "joinandconfigure",
                "room": self.room,
                "ptype": "publisher",
                "id": self.feed,
                "display": self.name,
                "audio": True,
                "video": True,
            },
            {"type": "offer", "sdp": self.pc.localDescription.sdp},
        )
        jsep = event.get("jsep")
        if not jsep:
            raise RuntimeError(f"janus did not answer the publisher: {event}")
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=jsep["sdp"], type="answer")
        )
        await self.session.trickle_completed(self.handle)

    async def close(self) -> None:
        self._closing = True
        if self.handle:
            await self.session.detach(self.handle)
        await super().close()


class JanusSubscriberLeg(Leg):
    """Subscribes to one feed: Janus offers, the client answers with ``start``."""

    def __init__(
        self, session: JanusSession, room: int, feed: int, receiver: Receiver, name: str
    ) -> None:
        super().__init__(name, {}, receiver)
        self.session = session
        self.room = room
        self.feed = feed
        self.handle = 0

    async def open(self) -> None:
        self.handle = await self.session.attach()
        assert self.receiver is not None
        if self.receiver.subscribed_at is None:
            self.receiver.subscribed_at = time.monotonic()
        body = {
            "request": "join",
            "room": self.room,
            "ptype": "subscriber",
            "streams": [{"feed": self.feed}],
        }
        for _ in range(50):
            try:
                event = await self.session.message(self.handle, body)
                break
            except JanusError as exc:  # the feed's PeerConnection is not up yet
                if "No such feed" not in str(exc):
                    raise
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"janus never published feed {self.feed}")
        jsep = event.get("jsep")
        if not jsep:
            raise RuntimeError(f"janus sent no offer to the subscriber: {event}")
        sdp = await self.answer(jsep["sdp"])
        await self.session.message(
            self.handle, {"request": "start"}, {"type": "answer", "sdp": sdp}
        )
        await self.session.trickle_completed(self.handle)

    async def close(self) -> None:
        self._closing = True
        if self.handle:
            await self.session.detach(self.handle)
        await super().close()


@dataclass
class Directory:
    """Where members meet: the server's port, or the Janus session and ids."""

    mode: str
    port: int = 0
    janus: JanusSession | None = None
    max_participants: int = 64

    def __post_init__(self) -> None:
        self._rooms: dict[str, int] = {}
        self._feeds: dict[str, int] = {}

    async def janus_room(self, room: str) -> int:
        """The numeric VideoRoom for ``room``, created on first use."""
        assert self.janus is not None
        if room not in self._rooms:
            number = self._rooms[room] = 1000 + len(self._rooms)
            handle = await self.janus.attach()
            await self.janus.request(
                handle,
                {
                    "request": "create",
                    "room": number,
                    "publishers": 4,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "bitrate": 0,
                    "notify_joining": False,
                },
            )
            await self.janus.detach(handle)
        return self._rooms[room]

    def feed(self, name: str) -> int:
        return self._feeds.setdefault(name, 1 + len(self._feeds))


class Member:
    """One participant of a room: publishes if given media, receives from ``feeds``.

    ``role`` is ``host`` or ``participant`` (pysfu's roles; in pysfu a room
    needs its host first). ``feeds`` names the members whose media this one
    receives (relay and janus subscribe to each; pysfu forwards them all).
    """

    def __init__(
        self,
        directory: Directory,
        room: str,
        name: str,
        role: str,
        media: Media | None,
        feeds: list[str],
        log: SendLog | None = None,
    ) -> None:
        self.directory = directory
        self.room = room
        self.name = name
        self.role = role
        self.tracks: dict[str, PacketTrack] = {}
        if media is not None:
            self.tracks = {
                "video": PacketTrack(media.video, log),
                "audio": PacketTrack(media.audio),
            }
        self.feeds = feeds
        self.receiver = Receiver(log) if feeds else None
        self.legs: list[Leg] = []
        self._pending: tuple[list[Leg], list[Leg]] | None = None

    async def _legs_of_mode(self) -> tuple[list[Leg], list[Leg]]:
        """The connections this member needs: (publishing, receiving)."""
        d = self.directory
        publishing: list[Leg] = []
        receiving: list[Leg] = []
        if d.mode == "pysfu":
            hello = {
                "type": "hello",
                "room": self.room,
                "id": self.name,
                "role": self.role,
            }
            leg = LineLeg(d.port, hello, self.tracks, self.receiver)
            (publishing if self.tracks else receiving).append(leg)
        elif d.mode == "relay":
            if self.tracks:
                hello = {
                    "type": "hello",
                    "room": self.room,
                    "id": self.name,
                    "role": "host",
                }
                publishing.append(LineLeg(d.port, hello, self.tracks, None))
            for feed in self.feeds:
                hello = {
                    "type": "hello",
                    "room": self.room,
                    "id": f"{self.name}<-{feed}",
                    "role": "participant",
                    "feed": feed,
                }
                assert self.receiver is not None
                receiving.append(LineLeg(d.port, hello, {}, self.receiver))
        else:
            assert d.janus is not None
            room = await d.janus_room(self.room)
            if self.tracks:
                publishing.append(
                    JanusPublisherLeg(d.janus, room, d.feed(self.name), self.tracks)
                )
            for feed in self.feeds:
                assert self.receiver is not None
                receiving.append(
                    JanusSubscriberLeg(
                        d.janus,
                        room,
                        d.feed(feed),
                        self.receiver,
                        f"{self.name}<-{feed}",
                    )
                )
        return publishing, receiving

    async def _open(self, legs: list[Leg], timeout: float) -> None:
        self.legs += legs
        for leg in legs:
            try:
                await asyncio.wait_for(leg.open(), timeout)  # type: ignore[attr-defined]
            except asyncio.TimeoutError:
                raise TimeoutError(f"{leg.name}: signalling took {timeout} s") from None
        for leg in legs:
            try:
                await asyncio.wait_for(asyncio.shield(leg.connected), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"{leg.name}: not connected after {timeout} s "
                    f"({leg.pc.connectionState})"
                ) from None

    async def publish(self, timeout: float) -> None:
        """Open the connection(s) that publish (in pysfu: the member's only one)."""
        if self._pending is None:
            self._pending = await self._legs_of_mode()
        await self._open(self._pending[0], timeout)

    async def subscribe(self, timeout: float) -> None:
        """Open the receiving connection(s); the feeds must have been published."""
        if self._pending is None:
            self._pending = await self._legs_of_mode()
        await self._open(self._pending[1], timeout)

    async def join(self, timeout: float) -> None:
        """Publish, then subscribe; returns once connected (not yet receiving)."""
        await self.publish(timeout)
        await self.subscribe(timeout)

    async def receiving(self, timeout: float) -> None:
        if self.receiver is not None:
            try:
                await asyncio.wait_for(self.receiver.media.wait(), timeout)
            except asyncio.TimeoutError:
                kinds = sorted({c.kind for c in self.receiver.streams.values()})
                raise TimeoutError(
                    f"{self.name}: received only {kinds or 'nothing'} in {timeout} s"
                ) from None

    async def sent(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for leg in self.legs:
            for kind, (packets, octets) in (await leg.sent()).items():
                before = totals.get(kind, (0, 0))
                totals[kind] = (before[0] + packets, before[1] + octets)
        return totals

    def problems(self) -> list[str]:
        return [f"{leg.name}: {p}" for leg in self.legs for p in leg.problems]

    async def close(self) -> None:
        for track in self.tracks.values():
            track.stop()
        await asyncio.gather(
            *(leg.close() for leg in self.legs), return_exceptions=True
        )


async def snapshot(publishers: list[Member], receivers: list[Member]) -> LoadSnapshot:
    """What ``publishers`` sent and ``receivers`` got so far, and our CPU time."""
    cpu = psutil.Process().cpu_times()
    sent: dict[str, tuple[int, int]] = {}
    for member in publishers:
        for kind, (packets, octets) in (await member.sent()).items():
            before = sent.get(kind, (0, 0))
            sent[kind] = (before[0] + packets, before[1] + octets)
    snap = LoadSnapshot(time.monotonic(), cpu.user + cpu.system, sent)
    for member in receivers:
        if member.receiver is not None:
            snap.streams.update(member.receiver.snapshot(member.name))
    return snap


async def close_all(members: list[Member]) -> None:
    await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
