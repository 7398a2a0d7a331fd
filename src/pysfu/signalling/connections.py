"""A cap on an aiohttp server's connections, and a deadline for their first request.

Every TCP connection costs the process a file descriptor, and so does every
ICE socket of every participant: a client that opens connections and sends
nothing could otherwise take all of them (aiohttp waits forever for a first
request), and then nobody can join and running rooms cannot open sockets.
:class:`ConnectionGuard` wraps the protocol factory of an aiohttp
``aiohttp.web.Server``:

- a connection that has not sent the headers of its first request
  ``idle_timeout`` seconds after it was accepted is closed, whether it sent
  nothing or a trickle (a "slowloris");
- at most ``max_connections`` are open at once (and never more than half the
  process' file descriptor limit): when one more arrives, the oldest
  connection still without a request is closed to make room; if every
  connection is busy, the new one is closed.

Later requests on a kept-alive connection are aiohttp's business
(``keepalive_timeout``), and established WebSockets the heartbeat's.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["HEADERS_END", "ConnectionGuard", "fd_budget"]

logger = logging.getLogger(__name__)

#: What ends the headers of an HTTP/1 request.
HEADERS_END = b"\r\n\r\n"


def fd_budget() -> int:
    """Half the process' soft file descriptor limit: the rest is for ICE
    sockets, log files and the like."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(soft // 2, 16)


class ConnectionGuard:
    """A protocol factory for ``loop.create_server`` that wraps
    ``factory`` (e.g. ``runner.server`` of an ``aiohttp.web.AppRunner``).
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        max_connections: int = 4096,
        idle_timeout: float = 10.0,
    ) -> None:
        self.factory = factory
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        #: Connections whose first request has not arrived, oldest first.
        self._silent: OrderedDict[_Guarded, None] = OrderedDict()
        self._open: set[_Guarded] = set()
        #: Connections closed because of the cap or the idle timeout.
        self.shed = 0
        self._logged = False

    @property
    def limit(self) -> int:
        """The cap in force: ``max_connections`` within the fd budget."""
        return min(self.max_connections, fd_budget())

    @property
    def open_connections(self) -> int:
        """Connections open now (those closed to make room no longer count)."""
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())

    def _accepted(self, connection: _Guarded) -> bool:
        """Register a new connection; False if it must be closed at once."""
        if len(self._open) >= self.limit:
            if not self._silent:
                self._shed("every connection is busy")
                return False
            oldest = next(iter(self._silent))
            self._shed("the oldest connection without a request gave way")
            # uncounted now: its connection_lost comes only later, and the
            # next newcomer must not find it again
            self._gone(oldest)
            oldest.abort()
        self._open.add(connection)
        self._silent[connection] = None
        return True

    def _shed(self, why: str) -> None:
        self.shed += 1
        if not self._logged:  # once: an attack must not flood the log too
            logger.warning("connection limit reached (%d): %s", self.limit, why)
            self._logged = True

    def _spoke(self, connection: _Guarded) -> None:
        self._silent.pop(connection, None)

    def _gone(self, connection: _Guarded) -> None:
        self._silent.pop(connection, None)
        self._open.discard(connection)
        if not self._open:
            self._logged = False


class _Guarded(asyncio.Protocol):
    """One connection: forwards everything to the wrapped protocol."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.made = False  # the wrapped protocol has its connection
        # the end of what came so far: the headers' end may span two reads
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard._accepted(self):
            transport.abort()
            return
        self.timer = asyncio.get_running_loop().call_later(
            self.guard.idle_timeout, self._silent_too_long
        )
        self.made = True
        self.inner.connection_made(transport)

    def _silent_too_long(self) -> None:
        self.guard._shed("a connection sent no request in time")
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            if HEADERS_END in self.tail + data:
                self.timer.cancel()
                self.timer = None
                self.guard._spoke(self)
            else:
                self.tail = (self.tail + data)[-len(HEADERS_END) :]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.guard._gone(self)
        if self.made:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def __getattr__(self, name: str) -> Any:  # what aiohttp may ask its protocol
        return getattr(self.inner, name)
