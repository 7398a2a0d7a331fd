"""Synthetic video for the publishers' clip: a moving texture.

The video must cost the VP8 encoder a realistic bitrate: a flat or static
image compresses to almost nothing. A coarse random texture scrolls diagonally
over a moving gradient, with a little fresh noise in every frame; at 640x360
and 30 fps libvpx fills a 1 Mbit/s target with it.
"""

from __future__ import annotations

import math

import av
import numpy as np

WIDTH, HEIGHT = 640, 360


class MovingTexture:
    """yuv420p frames with motion everywhere (no RGB conversion needed)."""

    def __init__(
        self, width: int = WIDTH, height: int = HEIGHT, noise: int = 4, seed: int = 1
    ) -> None:
        self.width, self.height, self.noise = width, height, noise
        self._rng = np.random.default_rng(seed)
        coarse = self._rng.integers(0, 256, (height // 4 + 1, width // 4 + 1))
        block = np.ones((8, 8), dtype=np.int16)
        self._texture = np.kron(coarse.astype(np.int16), block)[
            : 2 * height, : 2 * width
        ]
        self._gradient = np.linspace(0, 255, width).astype(np.int16)[None, :]
        self._chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)

    def render(self, index: int) -> av.VideoFrame:
        """The frame with number ``index`` (without pts)."""
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
