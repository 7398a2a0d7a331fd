"""The bandwidth estimate toward publishers: aiortc's, minus a per-millisecond loop."""

from __future__ import annotations

from aiortc.rate import RemoteBitrateEstimator

from ..forwarding.bitrate import WindowedRate

#: aiortc's incoming bitrate window (ms) and scale (bytes/ms -> bit/s)
INCOMING_WINDOW_MS = 1000
INCOMING_SCALE = 8000


def remote_bitrate_estimator() -> RemoteBitrateEstimator:
    """aiortc's REMB estimator (abs-send-time based), whose incoming bitrate
    counter is a :class:`~pysfu.forwarding.bitrate.WindowedRate`.

    aiortc's own counter clears one millisecond bucket per loop step, so
    every video packet paid for the milliseconds since the previous one
    (about half of the estimator's ~5 µs per packet); the estimates are the
    same (``tests/test_bitrate.py`` checks both against each other).
    """
    estimator = RemoteBitrateEstimator()
    estimator.incoming_bitrate = WindowedRate(  # type: ignore[assignment]
        INCOMING_WINDOW_MS, INCOMING_SCALE
    )
    return estimator
