"""Which of a subscriber's NACKs pysfu answers: once per round trip, within a budget.

A receiver repeats a NACK until the packet arrives. On a congested link the
retransmission is itself queued, so answering every NACK sends the same
packet again and again into the queue that lost it and keeps the queue full
(seen: 4-9 retransmissions per forwarded packet on a 1 Mbit/s link). So a
packet is resent at most once per round trip to that subscriber, and all
retransmissions to a subscriber share a byte budget: a token bucket filled at
a fraction of the rate the subscriber is sent. A packet over the budget is
not dropped at once but paced: held (a few dozen at most) until the bucket
has refilled, because a receiver that asked once may not ask again (aiortc's
only re-asks when a new packet goes missing), and a keyframe with a hole
stops its picture until the next keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NOT_IN_HISTORY",
    "NO_SOURCE",
    "OVER_BUDGET",
    "QUEUE_FULL",
    "TOO_SOON",
    "UNKNOWN_PAYLOAD_TYPE",
    "RetransmitLimiter",
    "RetransmitPolicy",
]

#: Refusal reasons, as counted in ``DownTrackStats.retransmissions_refused``.
TOO_SOON = "too_soon"
OVER_BUDGET = "over_budget"
NOT_IN_HISTORY = "not_in_history"
NO_SOURCE = "no_source"
UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"
#: Over budget while the pacing queue was full.
QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class RetransmitPolicy:
    """Bounds on retransmissions to one subscriber.

    - ``budget_share``: the budget's fill rate as a share of the subscriber's
      send rate of this track (0.15: 15 %).
    - ``min_budget``: the fill rate (bit/s) when the measured rate is lower
      (a stream that just started, audio).
    - ``burst``: seconds of budget the bucket holds.
    - ``max_paced``: packets held for later when over budget (beyond that
      they are refused, ``queue_full``).
    - ``default_interval``: seconds between two retransmissions of one packet
      while the round trip time is unknown.
    - ``min_interval``/``max_interval``: bounds on that interval when it
      comes from the measured round trip.
    """

    budget_share: float = 0.15
    min_budget: int = 64_000
    burst: float = 1.0
    max_paced: int = 48
    default_interval: float = 0.1
    min_interval: float = 0.02
    max_interval: float = 0.5


class RetransmitLimiter:
    """Decides, per NACKed packet, whether to resend it (time is passed in)."""

    def __init__(self, policy: RetransmitPolicy | None = None) -> None:
        self.policy = policy or RetransmitPolicy()
        self._last_sent: dict[int, float] = {}  # sequence number -> time
        self._tokens = 0.0
        self._budget_rate = self.policy.min_budget / 8  # bytes/s
        self._refilled_at: float | None = None
        self._rate_bytes = 0
        self._rate_since: float | None = None

    def update_send_rate(self, bytes_sent: int, now: float) -> None:
        """Tell the limiter the subscriber's total bytes sent so far; the
        budget follows the rate measured between calls at least 1 s apart."""
        if self._rate_since is None:
            self._rate_since, self._rate_bytes = now, bytes_sent
            return
        elapsed = now - self._rate_since
        if elapsed < 1.0:
            return
        rate = (bytes_sent - self._rate_bytes) / elapsed  # bytes/s
        self._rate_since, self._rate_bytes = now, bytes_sent
        policy = self.policy
        self._budget_rate = max(rate * policy.budget_share, policy.min_budget / 8)

    def interval(self, round_trip_time: float | None) -> float:
        """Seconds before the same packet may be resent."""
        policy = self.policy
        if round_trip_time is None:
            return policy.default_interval
        return min(max(round_trip_time, policy.min_interval), policy.max_interval)

    def check(
        self,
        sequence_number: int,
        size: int,
        now: float,
        round_trip_time: float | None,
    ) -> str | None:
        """``None`` if the packet may be resent now (and it is counted as
        sent), else the reason it may not (:data:`TOO_SOON`, :data:`OVER_BUDGET`)."""
        last = self._last_sent.get(sequence_number)
        if last is not None and now - last < self.interval(round_trip_time):
            return TOO_SOON
        self._refill(now)
        if self._tokens < size:
            return OVER_BUDGET
        self._tokens -= size
        self._last_sent[sequence_number] = now
        if len(self._last_sent) > 1024:
            self._forget_before(now - self.policy.max_interval)
        return None

    def wait(self, size: int, now: float) -> float:
        """Seconds until a packet of ``size`` bytes fits the budget."""
        self._refill(now)
        return max(size - self._tokens, 0.0) / self._budget_rate

    def _refill(self, now: float) -> None:
        limit = self._budget_rate * self.policy.burst
        if self._refilled_at is None:
            self._tokens = limit  # the first NACK finds a full bucket
        else:
            elapsed = max(now - self._refilled_at, 0.0)
            self._tokens = min(self._tokens + elapsed * self._budget_rate, limit)
        self._refilled_at = now

    def _forget_before(self, horizon: float) -> None:
        self._last_sent = {
            seq: sent for seq, sent in self._last_sent.items() if sent >= horizon
        }
