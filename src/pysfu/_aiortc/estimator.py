"""REMB estimators: aiortc's, minus a per-millisecond loop and 96 KiB of buckets."""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.rate import RemoteBitrateEstimator

from .bitrate import WindowedRate

#: aiortc's incoming bitrate window (ms) and scale (bytes/ms -> bit/s)
INCOMING_WINDOW_MS = 1000
INCOMING_SCALE = 8000


def remote_bitrate_estimator() -> RemoteBitrateEstimator:
    """aiortc's REMB estimator (abs-send-time based), whose incoming bitrate
    counter is a :class:`~pysfu._aiortc.bitrate.WindowedRate`.

    aiortc's own counter clears one millisecond bucket per loop step, so
    every video packet paid for the milliseconds since the previous one
    (about half of the estimator's ~5 µs per packet); the estimates are the
    same (``tests/integration/test_estimator.py`` checks both against each other).
    """
    estimator = RemoteBitrateEstimator()
    estimator.incoming_bitrate = WindowedRate(  # type: ignore[assignment]
        INCOMING_WINDOW_MS, INCOMING_SCALE
    )
    return estimator


#: Where aiortc keeps a video receiver's own estimator (a private attribute).
_RECEIVER_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"


def slim_receiver(receiver: RTCRtpReceiver) -> None:
    """Give an aiortc video receiver the lean estimator instead of its own.

    aiortc makes every transceiver's receiver, sending ones included, and each
    video receiver builds a REMB estimator whose rate counter preallocates one
    object per millisecond of its window: 96 KiB per video transceiver, or a
    third of what a subscriber with one video subscription costs. pysfu never
    runs those receivers' stock receive path (publishers' are taken over,
    subscriptions only send), but the swap keeps the receiver working if
    aiortc ever does.
    """
    if isinstance(getattr(receiver, _RECEIVER_ESTIMATOR, None), RemoteBitrateEstimator):
        setattr(receiver, _RECEIVER_ESTIMATOR, remote_bitrate_estimator())
