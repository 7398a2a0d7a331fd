"""Synthetic media for the publisher: moving textured video and a tone.

The video must cost the VP8 encoder a realistic bitrate: a flat or static
image compresses to almost nothing. A coarse random texture scrolls diagonally
over a moving gradient, with a little fresh noise in every frame; at 640x360
and 30 fps aiortc's VP8 encoder fills a 1 Mbit/s target with it.
"""

from __future__ import annotations

import fractions
import math

import av
import numpy as np
from aiortc import VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack

WIDTH, HEIGHT = 640, 360
VIDEO_CLOCK = fractions.Fraction(1, 90000)


class MovingTextureTrack(VideoStreamTrack):
    """30 fps yuv420p frames with motion everywhere (no RGB conversion needed)."""

    def __init__(
        self, width: int = WIDTH, height: int = HEIGHT, noise: int = 4, seed: int = 1
    ) -> None:
        super().__init__()
        self.width, self.height, self.noise = width, height, noise
        self._rng = np.random.default_rng(seed)
        coarse = self._rng.integers(0, 256, (height // 4 + 1, width // 4 + 1))
        block = np.ones((8, 8), dtype=np.int16)
        self._texture = np.kron(coarse.astype(np.int16), block)[
            : 2 * height, : 2 * width
        ]
        self._gradient = np.linspace(0, 255, width).astype(np.int16)[None, :]
        self._chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
        self.frames = 0

    def render(self, index: int) -> av.VideoFrame:
        """The frame with number ``index`` (pts is set by :meth:`recv`)."""
        w, h = self.width, self.height
        dx, dy = (index * 4) % w, (index * 2) % h
        luma = self._texture[dy : dy + h, dx : dx + w] // 2
        luma = luma + ((self._gradient + index * 3) % 256) // 2
        if self.noise:
            luma = luma + self._rng.integers(
                -self.noise, self.noise + 1, (h, w), dtype=np.int16
            )
        y = np.clip(luma, 0, 255).astype(np.uint8)
        u = self._chroma + np.uint8(40 + 30 * math.sin(index / 25))
        planes = np.concatenate([y.ravel(), u.ravel(), self._chroma.ravel()])
        return av.VideoFrame.from_ndarray(
            planes.reshape(h * 3 // 2, w), format="yuv420p"
        )

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.render(self.frames)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """A sine tone in aiortc's 20 ms mono s16 frames (Opus-encoded by the sender)."""

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frequency = frequency
        self._sample = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        assert isinstance(frame, av.AudioFrame)
        n = frame.samples
        t = (np.arange(n) + self._sample) / frame.sample_rate
        self._sample += n
        samples = (np.sin(2 * math.pi * self.frequency * t) * 8000).astype("<i2")
        frame.planes[0].update(samples.tobytes())
        return frame
