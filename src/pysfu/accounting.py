"""CPU time charged to each participant, and a budget that removes an offender.

One participant can make the server work through paths no byte or message
rate limit fully covers: signalling messages that are costly to handle, a
data channel flood (DTLS, SCTP and the channel's own checks run for every
packet, also for those the rate limit then drops), trickled candidates,
RTCP. The server's edges measure the CPU time (``time.thread_time``) each
such piece of work takes and charge it to the participant's
:class:`CpuAccount` under a reason (:data:`REASONS`); an account that spends
more than its share of one core over a sliding window reports it once, and
the participant is removed (reason ``cpu_budget``) long before the server
as a whole falls behind and sheds everyone.

:class:`CpuAccount` is pure (the time is passed in); :func:`metered` is
what the edges wrap their work in. Forwarding a publisher's media to its
subscribers is not charged: it is the service itself, and its cost grows
with the room, not with anything one client does wrong.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, TypeVar

__all__ = [
    "REASONS",
    "CpuAccount",
    "account_of",
    "find_account",
    "metered",
]

logger = logging.getLogger(__name__)

#: What CPU time is charged for: signalling messages, data channel packets
#: (DTLS records, SCTP packets and their chunks), trickled ICE candidates,
#: RTCP packets (SRTCP decryption included, also of refused copies).
REASONS = ("signalling", "data", "candidates", "rtcp")
#: Width of the sliding window's slots, in seconds.
_SLOT = 1.0

_T = TypeVar("_T")


class CpuAccount:
    """CPU seconds one participant made the server spend, by reason, and the
    budget it may spend in any ``window`` seconds (``share`` of one core)."""

    def __init__(
        self,
        *,
        share: float | None = None,
        window: float = 10.0,
        participant_id: str | None = None,
        on_exceeded: Callable[[], None] | None = None,
    ) -> None:
        #: Seconds charged by reason since the account was opened.
        self.totals: dict[str, float] = dict.fromkeys(REASONS, 0.0)
        self.participant_id = participant_id
        self.share = share
        self.window = window
        self._on_exceeded = on_exceeded
        #: The budget was exceeded (reported once).
        self.exceeded = False
        # (slot start, seconds charged in it), oldest first
        self._slots: deque[list[float]] = deque()
        self._in_window = 0.0

    def limit(
        self,
        share: float | None,
        window: float,
        participant_id: str,
        on_exceeded: Callable[[], None],
    ) -> None:
        """Set the budget, whose participant this is and what to do once it is
        exceeded (called once, with nothing to await)."""
        if share is not None and not share > 0:
            raise ValueError("a CPU budget is a positive share of one core")
        if not window > 0:
            raise ValueError("the CPU budget's window must be positive")
        self.share = share
        self.window = window
        self.participant_id = participant_id
        self._on_exceeded = on_exceeded

    @property
    def total(self) -> float:
        return sum(self.totals.values())

    def used(self, now: float) -> float:
        """Seconds charged within the last ``window`` seconds before ``now``."""
        self._expire(now)
        return self._in_window

    def charge(self, reason: str, seconds: float, now: float) -> bool:
        """Charge ``seconds`` of CPU for ``reason`` at time ``now``; whether
        the budget is exceeded (reported, the first time, to ``on_exceeded``)."""
        if seconds <= 0:
            return self.exceeded
        self.totals[reason] = self.totals.get(reason, 0.0) + seconds
        slots = self._slots
        if slots and now - slots[-1][0] < _SLOT:
            slots[-1][1] += seconds
        else:
            slots.append([now, seconds])
        self._in_window += seconds
        self._expire(now)
        if (
            not self.exceeded
            and self.share is not None
            and self._in_window > self.share * self.window
        ):
            self.exceeded = True
            logger.warning(
                "participant %s spent %.2f s of CPU in %.0f s (budget %.3g %% "
                "of a core; %s): removing it",
                self.participant_id,
                self._in_window,
                self.window,
                self.share * 100,
                ", ".join(f"{r} {s:.2f} s" for r, s in self.totals.items() if s),
            )
            if self._on_exceeded is not None:
                self._on_exceeded()
        return self.exceeded

    def snapshot(self) -> Mapping[str, float]:
        """Seconds charged by reason (those charged at all)."""
        return {reason: s for reason, s in self.totals.items() if s}

    def _expire(self, now: float) -> None:
        slots = self._slots
        while slots and now - slots[0][0] >= self.window:
            self._in_window -= slots.popleft()[1]
        if not slots:
            self._in_window = 0.0  # no float drift left behind


# -- accounts by the object they are kept for (a peer connection)

_accounts: weakref.WeakKeyDictionary[object, CpuAccount] = weakref.WeakKeyDictionary()


def account_of(key: object) -> CpuAccount:
    """The account kept for ``key`` (a participant's peer connection),
    opened on first use; it lives as long as ``key``."""
    account = _accounts.get(key)
    if account is None:
        account = _accounts[key] = CpuAccount()
    return account


def find_account(key: object) -> CpuAccount | None:
    """The account kept for ``key``, if one was opened."""
    return _accounts.get(key)


# -- measuring at the edges


class _Nesting(threading.local):
    """CPU seconds measured by meters running inside the current one (a
    trickled candidate inside the signalling message carrying it): each
    second is charged once, to the innermost meter."""

    def __init__(self) -> None:
        self.inner = 0.0


_nesting = _Nesting()


class _Metered(Awaitable[_T]):
    """Awaits a coroutine, charging the CPU time of each of its steps (not
    the time other tasks run while it waits) to an account."""

    __slots__ = ("_account", "_clock", "_coro", "_now", "_reason")

    def __init__(
        self,
        account: CpuAccount | None,
        reason: str | Callable[[], str | None],
        coro: Coroutine[Any, Any, _T],
        clock: Callable[[], float],
        now: Callable[[], float],
    ) -> None:
        self._account = account
        self._reason = reason
        self._coro = coro
        self._clock = clock
        self._now = now

    def __await__(self) -> Generator[Any, Any, _T]:
        coro, clock = self._coro, self._clock
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            outer = _nesting.inner
            _nesting.inner = 0.0
            start = clock()
            try:
                yielded = coro.throw(thrown) if thrown is not None else coro.send(sent)
            except StopIteration as stop:
                self._step_done(start, outer)
                return stop.value  # type: ignore[no-any-return]
            except BaseException:
                self._step_done(start, outer)
                raise
            self._step_done(start, outer)
            try:
                sent = yield yielded
                thrown = None
            except BaseException as exc:  # cancelled meanwhile: pass it on
                sent, thrown = None, exc

    def _step_done(self, start: float, outer: float) -> None:
        elapsed = self._clock() - start
        own = elapsed - _nesting.inner
        _nesting.inner = outer + elapsed
        if self._account is not None:
            given = self._reason
            # a function: what the work turned out to be
            reason = given if isinstance(given, str) else given()
            if reason is not None:
                self._account.charge(reason, own, self._now())


def metered(
    account: CpuAccount | None,
    reason: str | Callable[[], str | None],
    coro: Coroutine[Any, Any, _T],
    *,
    clock: Callable[[], float] = time.thread_time,
    now: Callable[[], float] = time.monotonic,
) -> Awaitable[_T]:
    """Await ``coro`` charging the CPU time of its own steps to ``account``
    (``None``: only measured, so that an enclosing meter does not charge it
    too) under ``reason``: a string, or a function asked after each step
    (work that learns what it is as it runs, e.g. a datagram read from a
    queue), whose ``None`` leaves that step measured but not charged.
    Meters nest: time charged by an inner one is not charged again by the
    one around it."""
    return _Metered(account, reason, coro, clock, now)
