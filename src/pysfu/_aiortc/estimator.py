"""REMB estimators: pysfu's own, in place of aiortc's, for publishers and receivers."""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.rate import RemoteBitrateEstimator

from ..rtp.estimator import RembEstimator


def remote_bitrate_estimator() -> RembEstimator:
    """The REMB estimator (abs-send-time based) of one publisher:
    :class:`pysfu.rtp.estimator.RembEstimator`, aiortc's algorithm with the
    same results (``tests/unit/test_remb_estimator.py`` compares them) at a
    fraction of the cost per packet.

    aiortc's ``RemoteBitrateEstimator`` built objects and made a dozen calls
    per video packet, and its rate counter cleared one millisecond bucket per
    Python loop step: ~22 % of a room of two's CPU per packet.
    """
    return RembEstimator()


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
    aiortc ever does (its ``add`` takes the same arguments).
    """
    if isinstance(getattr(receiver, _RECEIVER_ESTIMATOR, None), RemoteBitrateEstimator):
        setattr(receiver, _RECEIVER_ESTIMATOR, remote_bitrate_estimator())
