"""A sliding-window bitrate counter that costs the same however sparse the packets.

The forwarder's counter for the bitrate of each simulcast layer (it was the
REMB estimator's too, before pysfu's own estimator, :mod:`pysfu.rtp.estimator`,
replaced aiortc's). Pure: the time is passed in.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "WindowedRate",
]


class WindowedRate:
    """Bytes received over the last ``window_ms`` milliseconds, as a rate.

    A drop-in for aiortc's ``RateCounter`` (same ``add``/``rate``/``reset``
    and the same figures, reordered packets included; a sample older than
    the window is ignored, where aiortc's would land in a wrong bucket),
    called for every received packet of a simulcast layer. aiortc's counter keeps
    one bucket per millisecond and clears them one by one as time passes: a
    Python loop of one step per millisecond between two packets, about half
    of aiortc's REMB estimator's cost. This one keeps the samples themselves and drops
    those that left the window, so a packet costs O(1) amortized.

    ``scale`` converts bytes per millisecond into the unit of :meth:`rate`
    (8000: bit/s).
    """

    __slots__ = ("_origin", "_samples", "_scale", "_total", "_window")

    def __init__(self, window_ms: int, scale: int = 8000) -> None:
        self._window = window_ms
        self._scale = scale
        self._samples: deque[tuple[int, int]] = deque()
        self._total = 0
        #: start of the window: the first sample's time, then now - window + 1
        self._origin: int | None = None

    def add(self, value: int, now_ms: int) -> None:
        """Count ``value`` (bytes) received at ``now_ms``."""
        samples = self._samples
        if self._origin is None:
            self._origin = now_ms
        else:
            self._expire(now_ms)
            if now_ms < self._origin:
                return  # older than the window: nothing to count
        if samples and now_ms < samples[-1][0]:
            # reordered: keep the samples sorted, so that they expire in order
            index = len(samples)
            while index and samples[index - 1][0] > now_ms:
                index -= 1
            samples.insert(index, (now_ms, value))
        else:
            samples.append((now_ms, value))
        self._total += value

    def rate(self, now_ms: int) -> int | None:
        """The rate over the window ending at ``now_ms``, or ``None`` while
        there is nothing to go by (no sample, or a window of one millisecond)."""
        if self._origin is None:
            return None
        self._expire(now_ms)
        active_ms = now_ms - self._origin + 1
        if self._samples and active_ms > 1:
            return round(self._scale * self._total / active_ms)
        return None

    def reset(self) -> None:
        """Forget every sample."""
        self._samples.clear()
        self._total = 0
        self._origin = None

    def _expire(self, now_ms: int) -> None:
        start = now_ms - self._window + 1
        if self._origin is not None and self._origin < start:
            self._origin = start
            samples = self._samples
            while samples and samples[0][0] < start:
                _, value = samples.popleft()
                self._total -= value
