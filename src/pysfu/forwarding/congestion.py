"""The bitrate pysfu asks a video publisher for (REMB), from its subscribers' estimates.

Without simulcast a forwarded stream reaches every subscriber at the rate the
publisher encodes it. If pysfu told the publisher only its own uplink
estimate, a subscriber behind a slower link would get more than its link
carries: its queue fills, packets are lost, NACKs and keyframe requests add
to the load and the picture stops. So the REMB sent to the publisher also
follows what each subscriber's receiver estimates for its downlink (the REMB
the subscriber sends pysfu), as a direct call would.

How the estimates are combined is a policy (:class:`RembPolicy`): the default,
:class:`SlowestSubscriber`, takes the minimum, which suits small rooms; a
large room may prefer a percentile so that one bad link does not lower the
picture for everyone. The forwarder hands the policy only fresh estimates
(see :attr:`pysfu.config.ForwardingConfig.remb_stale_after`).

A simulcasting publisher is different (:func:`simulcast_target`): each
subscriber gets the layer its own estimate carries, so the slowest one must
not lower what the others get, and pysfu's own uplink estimate is not used
either. It was computed from arrival times taken in Python, after the event
loop got to the packet; on a busy server that loop's jitter read as a
congested link, and the estimate held Chromium at 140-490 kbit/s on a clean
link (its lowest layer only: 320x180 where a direct call sends 540p). The
arrival times are now the kernel's (:mod:`pysfu._aiortc.udpsock`); using the
estimate here again waits for a measurement with Chromium's simulcast. The
publisher is told the cap alone and its own sender decides: without
transport-cc (aiortc offers REMB only) Chromium's send-side controller
follows the loss in pysfu's receiver reports and backs off when its uplink
drops packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_FLOOR",
    "RembPolicy",
    "SlowestSubscriber",
    "SubscriberEstimate",
    "UplinkOnly",
    "simulcast_target",
]

#: Below this (bit/s) pysfu never asks a publisher to go: a video encoder at
#: 100 kbit/s still gives a small moving picture, and a far lower REMB taken
#: from one momentary dip would take seconds to climb back from.
DEFAULT_FLOOR = 100_000


class RembPolicy(Protocol):
    """Decides the bitrate (bit/s) reported to one video publisher in REMB."""

    def combine(
        self, own_estimate: int | None, cap: int | None, subscribers: Sequence[int]
    ) -> int | None:
        """``own_estimate``: pysfu's estimate of the publisher's uplink
        (``None`` before it has one); ``cap``: the configured maximum;
        ``subscribers``: each subscriber's fresh estimate for this track.
        ``None`` means: send nothing yet."""
        ...


@dataclass(frozen=True)
class SlowestSubscriber:
    """The minimum of the uplink estimate, the cap and every subscriber's
    estimate, but never below ``floor`` (unless the cap is lower).

    ``start_at_cap``: before anything is measured (pysfu's uplink estimate
    takes its first ~3 s of video, and no subscriber has reported), the
    publisher is told the cap. Chromium takes a REMB that arrives in the
    first 2 s after its first receiver report as its target at once (its
    start phase; later REMBs only limit what its loss-based controller
    reaches at ~8 %/s). Saying nothing then left it at its 300 kbit/s start,
    where it lowers the resolution and, on detailed pictures, never raises
    it again: 180p on a clean link where a direct call, whose transport-cc
    probes measure Mbit/s within a second, keeps 270-540p. Too high a start
    costs the publisher's uplink a few seconds of queueing at most: its
    loss-based controller and pysfu's estimate (over-use) bring it down.
    """

    floor: int = DEFAULT_FLOOR
    start_at_cap: bool = True

    def combine(
        self, own_estimate: int | None, cap: int | None, subscribers: Sequence[int]
    ) -> int | None:
        candidates = list(subscribers)
        if own_estimate is not None:
            candidates.append(own_estimate)
        if not candidates:
            # nothing measured yet: the start value, if any
            return cap if self.start_at_cap else None
        bitrate = max(min(candidates), self.floor)
        if cap is not None:
            bitrate = min(bitrate, cap)
        return bitrate


@dataclass(frozen=True)
class UplinkOnly:
    """What pysfu did before subscribers' estimates counted: the uplink
    estimate, capped (for rooms whose subscribers must not slow the
    publisher, e.g. a recorder next to a slow viewer)."""

    def combine(
        self, own_estimate: int | None, cap: int | None, subscribers: Sequence[int]
    ) -> int | None:
        if own_estimate is None:
            return None
        return own_estimate if cap is None else min(own_estimate, cap)


def simulcast_target(own_estimate: int | None, cap: int | None) -> int | None:
    """The bitrate (bit/s) reported to a simulcasting publisher: the cap, or
    ``None`` (send nothing) without one.

    ``own_estimate`` (pysfu's uplink estimate) is deliberately not used: it
    was taken from arrival times in Python, which on a loaded machine saw
    event-loop jitter as congestion and held the publisher to its
    lowest layer, starving every subscriber who could take a higher one.
    The publisher's own send-side controller, driven by the loss in pysfu's
    receiver reports, protects its uplink; subscribers are protected by
    their layers. (Its arrival times are now the kernel's; it can become
    the cap here again once measured with Chromium's simulcast.)
    """
    del own_estimate  # see above: not trusted for a layered publisher
    return cap


@dataclass
class SubscriberEstimate:
    """A subscriber's latest REMB for one forwarded track."""

    bitrate: int
    received_at: float  # time.monotonic()
