"""Keyframe requests toward a publisher, throttled and coalesced."""

from __future__ import annotations

import time
from collections.abc import Callable

from .._aiortc.timers import monotonic_call_at
from .ports import CallAt, Cancellable, Clock

__all__ = [
    "KeyframeRequester",
]


class KeyframeRequester:
    """Sends at most one keyframe request (PLI) per ``min_interval`` seconds.

    Every subscriber that joins, loses a picture or switches source asks for a
    keyframe; forwarding each request would make the publisher encode keyframe
    after keyframe (they are 5-10x larger than delta frames). Requests inside
    the interval are coalesced into one sent when the interval ends, so the
    last asker is never left without a keyframe.

    ``clock`` reads the time and ``call_at(when, callback)`` schedules the
    coalesced request at a deadline on that clock: tests drive both.
    """

    def __init__(
        self,
        send: Callable[[], bool],
        min_interval: float = 0.5,
        clock: Clock = time.monotonic,
        call_at: CallAt = monotonic_call_at,
    ) -> None:
        self._send = send
        self.min_interval = min_interval
        self._clock = clock
        self._call_at = call_at
        self._last_sent: float | None = None
        self._deferred: Cancellable | None = None
        #: Requests received (from subscribers or the SFU itself).
        self.requested = 0
        #: Requests actually sent upstream.
        self.sent = 0

    def request(self) -> None:
        """Ask for a keyframe; sent now, or coalesced into one at the interval end."""
        self.requested += 1
        if self._deferred is not None:
            return
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self.min_interval:
            self._fire()
        else:
            self._deferred = self._call_at(
                self._last_sent + self.min_interval, self._fire
            )

    def _fire(self) -> None:
        self._deferred = None
        if self._send():
            self._last_sent = self._clock()
            self.sent += 1

    def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
