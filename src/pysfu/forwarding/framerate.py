"""A sliding-window frame rate counter for one RTP stream (a simulcast layer).

A video frame is the run of packets sharing one RTP timestamp; a packet
whose timestamp is newer (RFC 3550 serial arithmetic) than every one seen
begins a frame. Reordered or repeated packets of an earlier frame are not
counted again. Pure: the time is passed in.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "FrameRate",
]

_HALF = 1 << 31
_MASK = (1 << 32) - 1


class FrameRate:
    """Frames begun over the last ``window_ms`` milliseconds, per second.

    The window is a few seconds long on purpose: an encoder short of bits
    drops frames in bursts, and a layer choice that followed each burst
    would switch (and ask for a keyframe) every second.
    """

    __slots__ = ("_first", "_frames", "_last_timestamp", "_window")

    def __init__(self, window_ms: int = 4000) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, not {window_ms}")
        self._window = window_ms
        self._frames: deque[int] = deque()  # when each frame began (ms)
        self._last_timestamp: int | None = None
        self._first: int | None = None  # the first frame's time (ms)

    def add(self, timestamp: int, now_ms: int) -> bool:
        """A packet with RTP ``timestamp`` arrived at ``now_ms``; returns
        whether it began a frame."""
        last = self._last_timestamp
        if last is not None:
            ahead = (timestamp - last) & _MASK
            if ahead == 0 or ahead >= _HALF:
                return False  # the same frame, or an earlier one (reordered)
        self._last_timestamp = timestamp
        if self._first is None:
            self._first = now_ms
        self._frames.append(now_ms)
        self._expire(now_ms)
        return True

    def rate(self, now_ms: int) -> float | None:
        """Frames per second over the window ending at ``now_ms`` (over the
        time since the first frame while that is shorter), or ``None`` with
        less than half a second to go by."""
        if self._first is None:
            return None
        self._expire(now_ms)
        span = min(now_ms - self._first, self._window)
        if span < 500:
            return None
        return len(self._frames) * 1000 / span

    def reset(self) -> None:
        """Forget every frame (the stream restarted: a new SSRC)."""
        self._frames.clear()
        self._last_timestamp = None
        self._first = None

    def _expire(self, now_ms: int) -> None:
        start = now_ms - self._window
        frames = self._frames
        while frames and frames[0] <= start:
            frames.popleft()
