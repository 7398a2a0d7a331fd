"""Pre-encoded media for the load generator: encode once, send many times.

A publisher that encodes live spends most of the load generator's CPU on
libvpx and competes with the server it measures. Here a clip is encoded once
per run (the scrolling texture of :mod:`synthetic`, VP8 640x360 at 30 fps,
a keyframe only at its start, plus an Opus tone) and :class:`PacketTrack`
hands its ``av.Packet``s to aiortc at real-time pace. aiortc's sender
packetizes anything that is not a decoded frame with ``encoder.pack()``
instead of encoding it, so sending costs only RTP, SRTP and the socket.

Keyframe requests (PLI/FIR) reach the sender, which only sets a flag its
encode branch reads; :func:`on_keyframe_request` makes the track restart the
clip at its keyframe instead, so late joiners get one as a live encoder would
send it. Subscribers do not decode, so the jump in the picture is harmless.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from .synthetic import HEIGHT, WIDTH, MovingTexture

VIDEO_RATE = 90000
AUDIO_RATE = 48000
FPS = 30
AUDIO_PTIME = 0.02
#: The last bytes of a frame identify it in the RTP packet that ends it.
KEY_BYTES = 16


@dataclass(frozen=True)
class Clip:
    """Encoded frames of one kind, sent in a loop."""

    kind: str
    frames: tuple[bytes, ...]
    keyframes: tuple[bool, ...]
    interval: float  # seconds between frames
    ticks: int  # RTP clock ticks between frames
    clock_rate: int

    @property
    def bitrate(self) -> float:
        return sum(len(f) for f in self.frames) * 8 / (len(self.frames) * self.interval)


def encode_video(seconds: float = 4.0, bitrate: int = 1_000_000) -> Clip:
    """VP8 640x360 at 30 fps, real-time settings, one keyframe at the start."""
    count = max(2, round(seconds * FPS))
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = bitrate
    codec.gop_size = count + 1
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "4",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "error-resilient": "1",
        "rc_lookahead": "0",
        "keyint_min": str(count + 1),
    }
    texture = MovingTexture()
    frames: list[bytes] = []
    keys: list[bool] = []
    for index in range(count):
        frame = texture.render(index)
        frame.pts = index
        frame.time_base = codec.time_base
        for packet in codec.encode(frame):
            frames.append(bytes(packet))
            keys.append(bool(packet.is_keyframe))
    for packet in codec.encode(None):
        frames.append(bytes(packet))
        keys.append(bool(packet.is_keyframe))
    if not keys or not keys[0]:
        raise RuntimeError("the VP8 clip does not start with a keyframe")
    return Clip(
        "video", tuple(frames), tuple(keys), 1 / FPS, VIDEO_RATE // FPS, VIDEO_RATE
    )


def encode_audio(seconds: float = 1.0, frequency: float = 440.0) -> Clip:
    """Opus, 20 ms frames of a stereo tone at 48 kHz (what aiortc negotiates)."""
    samples = round(AUDIO_RATE * AUDIO_PTIME)
    count = max(1, round(seconds / AUDIO_PTIME))
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 48000
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    frames: list[bytes] = []
    for index in range(count + 4):
        t = (np.arange(samples) + index * samples) / AUDIO_RATE
        tone = (np.sin(2 * math.pi * frequency * t) * 8000).astype("<i2")
        stereo = np.repeat(tone, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * samples
        frame.time_base = codec.time_base
        frames.extend(bytes(p) for p in codec.encode(frame))
    frames = frames[:count]
    return Clip(
        "audio",
        tuple(frames),
        tuple(True for _ in frames),
        AUDIO_PTIME,
        samples,
        AUDIO_RATE,
    )


@dataclass(frozen=True)
class Media:
    video: Clip
    audio: Clip


def encode_media(seconds: float = 4.0, bitrate: int = 1_000_000) -> Media:
    return Media(encode_video(seconds, bitrate), encode_audio())


class SendLog:
    """When each video frame left the publisher, keyed by its last bytes.

    The clip loops, so a key maps to its latest send; a frame arrives long
    before the clip comes round again.
    """

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}

    def latency(self, key: bytes, arrival: float) -> float | None:
        sent = self.sent.get(key)
        return None if sent is None else arrival - sent


class PacketTrack(MediaStreamTrack):
    """Returns a clip's packets at real-time pace, looping, as ``av.Packet``."""

    def __init__(self, clip: Clip, log: SendLog | None = None) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.log = log
        self.sent_frames = 0
        self.sent_keyframes = 0
        self.keyframe_requests = 0
        self._index = 0
        self._start: float | None = None
        self._restart = False
        self._time_base = fractions.Fraction(1, clip.clock_rate)
        self._running = asyncio.Event()
        self._running.set()

    def pause(self) -> None:
        """Stop sending (the connection stays up) until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._restart = True

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError  # aiortc's sender stops on this
        clip = self.clip
        if not self._running.is_set():
            await self._running.wait()
            self._start = None  # pace from now on, no catching up
        if self._start is None:
            self._start = time.monotonic() - self.sent_frames * clip.interval
        wait = self._start + self.sent_frames * clip.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._restart:
            self._restart = False
            self._index = 0
        data = clip.frames[self._index]
        if clip.keyframes[self._index]:
            self.sent_keyframes += 1
        self._index = (self._index + 1) % len(clip.frames)
        packet = av.Packet(data)
        packet.pts = self.sent_frames * clip.ticks
        packet.time_base = self._time_base
        self.sent_frames += 1
        if self.log is not None:
            self.log.sent[data[-KEY_BYTES:]] = time.monotonic()
        return packet


def on_keyframe_request(sender: RTCRtpSender, track: PacketTrack) -> None:
    """Make ``sender``'s PLI/FIR handling restart ``track`` at its keyframe.

    aiortc calls ``sender._send_keyframe()`` for PLI and FIR; it only sets
    the encoder's force-keyframe flag, which pre-encoded data never reads.
    """
    original: Callable[[], None] = sender._send_keyframe

    def send_keyframe() -> None:
        track.request_keyframe()
        original()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


if __name__ == "__main__":
    start = time.process_time()
    media = encode_media()
    print(
        f"video: {len(media.video.frames)} frames, "
        f"{sum(media.video.keyframes)} keyframes, {media.video.bitrate / 1000:.0f} "
        f"kbit/s, first {len(media.video.frames[0])} B; audio: "
        f"{len(media.audio.frames)} frames, {media.audio.bitrate / 1000:.0f} kbit/s; "
        f"encoded in {time.process_time() - start:.1f} s CPU"
    )
    keys = {f[-KEY_BYTES:] for f in media.video.frames}
    print(f"distinct frame keys: {len(keys)} of {len(media.video.frames)}")
