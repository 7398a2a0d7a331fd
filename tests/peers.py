"""Real aiortc client peers for the integration tests.

Each peer publishes a video track whose frames carry a readable pattern (a
peer code and a frame counter drawn as black/white blocks, robust to lossy
coding) and an audio tone of its own frequency, answers the server's offers,
and decodes whatever it receives so tests can assert on what a user would see
and hear.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from pysfu import Room
from pysfu._aiortc import (
    configure_ice,
    follow_remote_ice,
    ice_credentials_in,
    remote_ice_credentials,
    restart_ice,
    set_consent_timing,
)
from pysfu.signalling import (
    Answer,
    Joined,
    MemorySignalling,
    Offer,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
)
from pysfu.signalling import Error as ErrorMessage

from .helpers import LIVENESS

WIDTH, HEIGHT, BLOCK = 320, 240, 40
COLUMNS = WIDTH // BLOCK
CODE_BITS, COUNTER_BITS = 4, 16


def draw_pattern(code: int, counter: int) -> np.ndarray:
    """An RGB image encoding ``code`` and ``counter`` as black/white blocks."""
    image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    bits = [(code >> i) & 1 for i in range(CODE_BITS)] + [1, 0]  # + sync marker
    bits += [(counter >> i) & 1 for i in range(COUNTER_BITS)]
    for index, bit in enumerate(bits):
        row, column = divmod(index, COLUMNS)
        image[
            row * BLOCK : (row + 1) * BLOCK, column * BLOCK : (column + 1) * BLOCK
        ] = 255 if bit else 0
    return image


def read_pattern(frame: av.VideoFrame) -> tuple[int, int] | None:
    """Read ``(code, counter)`` back from a decoded frame, or ``None``."""
    gray = frame.reformat(width=WIDTH, height=HEIGHT).to_ndarray(format="gray")
    bits = []
    for index in range(CODE_BITS + 2 + COUNTER_BITS):
        row, column = divmod(index, COLUMNS)
        centre = gray[
            row * BLOCK + 10 : (row + 1) * BLOCK - 10,
            column * BLOCK + 10 : (column + 1) * BLOCK - 10,
        ]
        mean = float(centre.mean())
        if 60 < mean < 196:
            return None  # not a clean block: not our pattern
        bits.append(1 if mean >= 128 else 0)
    if bits[CODE_BITS : CODE_BITS + 2] != [1, 0]:
        return None
    code = sum(bit << i for i, bit in enumerate(bits[:CODE_BITS]))
    counter = sum(bit << i for i, bit in enumerate(bits[CODE_BITS + 2 :]))
    return code, counter


class PatternVideoTrack(VideoStreamTrack):
    """30 fps frames carrying the peer's code and a frame counter."""

    def __init__(self, code: int) -> None:
        if not 0 <= code < 1 << CODE_BITS:
            # it would be drawn modulo 16: another peer's code, silently
            raise ValueError(f"pattern code {code} not in 0..{(1 << CODE_BITS) - 1}")
        super().__init__()
        self.code = code
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(
            draw_pattern(self.code, self.counter), format="rgb24"
        )
        frame.pts, frame.time_base = pts, time_base
        self.counter = (self.counter + 1) % (1 << COUNTER_BITS)
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A sine tone, so a listener can tell whose audio it hears."""

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        #: Peak sample value; 0 sends silence (still packets, with level -127).
        self.amplitude = 8000
        self._sample = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        n = frame.samples
        t = (np.arange(n) + self._sample) / frame.sample_rate
        self._sample += n
        samples = np.sin(2 * math.pi * self.frequency * t) * self.amplitude
        samples = samples.astype("<i2")
        frame.planes[0].update(samples.tobytes())
        return frame


def dominant_frequency(chunks: list[np.ndarray], sample_rate: int) -> float:
    signal = np.concatenate(chunks).astype(float)
    spectrum = np.abs(np.fft.rfft(signal))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(signal), 1 / sample_rate)[int(spectrum.argmax())])


@dataclass
class ReceivedTrack:
    """What a peer got on one incoming track."""

    track_id: str
    kind: str
    frames: int = 0
    patterns: list[tuple[int, int]] = field(default_factory=list)
    #: Mean (R, G, B) of a recent frame that carried no pattern (other clients).
    color: tuple[int, int, int] | None = None
    #: Decoded frames without a pattern.
    other_frames: int = 0
    #: Width and height of that frame, and the (R, G, B) of 16 points along
    #: its row at a third of its height (the bars of a test pattern).
    size: tuple[int, int] | None = None
    row: list[tuple[int, int, int]] = field(default_factory=list)
    audio_chunks: list[np.ndarray] = field(default_factory=list)
    sample_rate: int = 48000
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)

    def codes(self) -> set[int]:
        return {code for code, _ in self.patterns}

    def frequency(self) -> float:
        return dominant_frequency(self.audio_chunks[-50:], self.sample_rate)

    def peak(self) -> int:
        if not self.audio_chunks:
            return 0
        return int(np.abs(np.concatenate(self.audio_chunks[-50:])).max())


def note_picture(received: ReceivedTrack, rgb: np.ndarray) -> None:
    """Keep a frame's mean colour, size and row samples (see ReceivedTrack)."""
    mean = rgb.mean(axis=(0, 1))
    received.color = (int(mean[0]), int(mean[1]), int(mean[2]))
    height, width = rgb.shape[:2]
    received.size = (width, height)
    line = rgb[height // 3]
    received.row = [
        (int(p[0]), int(p[1]), int(p[2]))
        for p in (line[width * (2 * i + 1) // 32] for i in range(16))
    ]


class Peer:
    """An aiortc client that joins a room through the in-memory adapter."""

    def __init__(
        self,
        name: str,
        code: int,
        *,
        tone: float = 440.0,
        publish_video: bool = True,
        publish_audio: bool = True,
        offer_filter: Callable[[str], str] | None = None,
        answer_filter: Callable[[str], str] | None = None,
        video: MediaStreamTrack | None = None,
        ice_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        """``video``: a track to publish instead of a :class:`PatternVideoTrack`;
        ``ice_addresses``: the host candidates to offer (a namespace's own);
        ``offer_filter``, ``answer_filter``: rewrite the SDP received, sent."""
        self.name = name
        self.ice_addresses = list(ice_addresses)
        self.offer_filter = offer_filter
        self.answer_filter = answer_filter
        self.code = code
        self.pc = RTCPeerConnection(
            RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.video = (video or PatternVideoTrack(code)) if publish_video else None
        self.audio = ToneAudioTrack(tone) if publish_audio else None
        self.client: Any = None
        self.received: dict[str, ReceivedTrack] = {}
        self.messages: list[Any] = []
        self.errors: list[ErrorMessage] = []
        self.plis_received = 0
        self.answers_sent = 0
        #: Offers that restarted ICE, answered with fresh credentials.
        self.ice_restarts = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._new_track = asyncio.Event()
        self._publishing = False
        #: The server's data channel, once it arrived, and what came on it.
        self.channel: RTCDataChannel | None = None
        self.data_received: list[str | bytes] = []
        self._channel_open = asyncio.Event()
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)

    async def join(self, room: Room, role: str = "participant", **options: Any) -> Peer:
        """Join through the in-memory adapter."""
        return self.attach(
            await MemorySignalling().join(room, self.name, role, **options)
        )

    def attach(self, client: Any) -> Peer:
        """Use any client with ``inbox`` (server messages) and ``send()``."""
        self.client = client
        self._tasks.append(asyncio.create_task(self._signalling_loop()))
        return self

    # -- signalling ------------------------------------------------------

    async def _signalling_loop(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.inbox.get()
            self.messages.append(message)
            if isinstance(message, Offer):
                await self._answer(message.sdp)
            elif isinstance(message, ErrorMessage):
                self.errors.append(message)

    async def _answer(self, sdp: str) -> None:
        if self.offer_filter is not None:
            sdp = self.offer_filter(sdp)
        offered = ice_credentials_in(sdp)
        restarted = (
            self.answers_sent > 0
            and offered is not None
            and offered != remote_ice_credentials(self.pc)
        )
        if restarted:
            # the server restarted ICE: answer with fresh credentials of our
            # own, as JSEP makes browsers do (aiortc alone cannot)
            restart_ice(self.pc)
            self.ice_restarts += 1
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if restarted:
            follow_remote_ice(self.pc, sdp)
        if not self._publishing:
            self._attach_outgoing(sdp)
        configure_ice(self.pc, host_addresses=self.ice_addresses)
        if self.answers_sent == 0:
            # as browsers do (a check every 5 s, retransmitted, lost after
            # 30 s unanswered), not aioice's 0.5 s per check: an overloaded
            # test machine answering late must not end the test's client
            set_consent_timing(self.pc, 5.0, 6)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        assert self.client is not None
        self.answers_sent += 1
        answer = self.pc.localDescription.sdp
        if self.answer_filter is not None:
            answer = self.answer_filter(answer)
        await self.client.send(Answer(sdp=answer))

    def _attach_outgoing(self, offer_sdp: str) -> None:
        """Send our tracks on the sections the server offered to receive."""
        sections = offer_sdp.split("\r\nm=")[1:]
        for section in sections:
            if "a=recvonly" not in section:
                continue
            mid = next(
                line[6:] for line in section.split("\r\n") if line.startswith("a=mid:")
            )
            kind = section.split(" ", 1)[0]
            track: MediaStreamTrack | None = (
                self.video if kind == "video" else self.audio
            )
            if track is None:
                continue
            transceiver = next(t for t in self.pc.getTransceivers() if t.mid == mid)
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendonly"
            self._count_plis(transceiver.sender)
            self._publishing = True

    def _count_plis(self, sender: RTCRtpSender) -> None:
        """Count keyframe requests reaching this publisher (then let aiortc act)."""
        original = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                self.plis_received += 1
            await original(packet)

        sender._handle_rtcp_packet = handle

    # -- data channel ----------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self.data_received.append)
        if channel.readyState == "open":
            self._channel_open.set()
        channel.on("open", self._channel_open.set)

    async def wait_channel(self, timeout: float = LIVENESS) -> RTCDataChannel:
        """The server's data channel, once open."""
        await asyncio.wait_for(self._channel_open.wait(), timeout)
        assert self.channel is not None
        return self.channel

    # -- receiving -------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        received = ReceivedTrack(track_id=track.id, kind=track.kind)
        self.received[track.id] = received
        self._new_track.set()
        self._tasks.append(asyncio.create_task(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                received.frames += 1
                if isinstance(frame, av.VideoFrame):
                    pattern = read_pattern(frame)
                    if pattern is not None:
                        received.patterns.append(pattern)
                        received.first_frame.set()
                    else:
                        received.other_frames += 1
                        if received.other_frames % 10 == 1:
                            note_picture(received, frame.to_ndarray(format="rgb24"))
                elif isinstance(frame, av.AudioFrame):
                    data = frame.to_ndarray().reshape(-1)
                    received.sample_rate = frame.sample_rate
                    received.audio_chunks.append(data[:: len(frame.layout.channels)])
                    del received.audio_chunks[:-100]
                    received.first_frame.set()
        except MediaStreamError:
            received.ended.set()

    def track_from(self, publisher: str, kind: str) -> ReceivedTrack | None:
        return self.received.get(f"{publisher}/{kind}")

    async def wait_track(
        self, publisher: str, kind: str, timeout: float = LIVENESS
    ) -> ReceivedTrack:
        async def wait() -> ReceivedTrack:
            while (track := self.track_from(publisher, kind)) is None:
                self._new_track.clear()
                await self._new_track.wait()
            return track

        return await asyncio.wait_for(wait(), timeout)

    async def wait_video_from(
        self, publisher: Peer, frames: int = 10, timeout: float = LIVENESS
    ) -> ReceivedTrack:
        """Wait until ``frames`` decoded frames of ``publisher``'s pattern arrived."""
        track = await self.wait_track(publisher.name, "video", timeout)

        async def enough() -> None:
            while sum(1 for c, _ in track.patterns if c == publisher.code) < frames:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(enough(), timeout)
        return track

    async def wait_audio_from(
        self, publisher: Peer, frames: int = 50, timeout: float = LIVENESS
    ) -> ReceivedTrack:
        track = await self.wait_track(publisher.name, "audio", timeout)

        async def enough() -> None:
            while track.frames < frames:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(enough(), timeout)
        return track

    def saw(self, kind: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pc.close()
        if hasattr(self.client, "close"):
            await self.client.close()
        self.client = None  # as a transport would, drop the server-side handle


class PeerFactory(Protocol):
    """The ``peers`` fixture: makes peers that are closed after the test."""

    def __call__(self, name: str, code: int, **options: Any) -> Peer: ...


__all__ = [
    "Joined",
    "ParticipantJoined",
    "ParticipantLeft",
    "Peer",
    "PeerFactory",
    "ReceivedTrack",
    "RoomClosed",
    "draw_pattern",
    "read_pattern",
]


def like_a_browser(sdp: str) -> str:
    """The answer with a browser's origin line (random id, version 2)."""
    return re.sub(
        r"^o=.*$",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        sdp,
        count=1,
        flags=re.M,
    )
