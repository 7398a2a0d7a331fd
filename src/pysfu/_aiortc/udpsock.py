"""A UDP socket per connection, drained in batches with STUN first.

asyncio's datagram transport reads one datagram per socket per loop
iteration. A connection's STUN (the peer's answers to consent checks, its
own checks) shares its socket with its media, so a peer that floods its own
connection (tiny SCTP chunks, junk RTP), or a loop slowed by other work,
makes those answers wait behind everything queued before them: one loop
iteration per queued datagram. Measured under ``stress-ng --cpu 2``, a
flooding client's consent answers reached the server 2.0-4.6 s late.

Here pysfu binds each connection's socket itself and hands aioice a
:class:`ConnectionSocket` as its ``StunProtocol``'s transport: on each
readiness event up to :data:`MAX_DATAGRAMS_PER_WAKEUP` waiting datagrams
are read, and STUN (RFC 7983: first byte 0-3) is handed on before the
media of the same batch, as the shared port (:mod:`.udpmux`) does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Datagrams read from one connection's socket per readiness event at most.
#: More than its receive buffer (aioice's 256 KiB, doubled by the kernel)
#: holds of full-size media, so a backlog after a stall is read at once; a
#: flood of tiny datagrams (several hundred fit) takes a few iterations, and
#: the loop turns to the other sockets in between.
MAX_DATAGRAMS_PER_WAKEUP = 256
_MAX_DATAGRAM = 65536

Address = tuple[str, int]
Batch = list[tuple[bytes, Address]]


class _Buffers(threading.local):
    """One receive buffer per thread (every batch is copied out before it is
    handed on), not 64 KiB per connection."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_MAX_DATAGRAM))


_buffers = _Buffers()


def read_batch(
    sock: socket.socket, limit: int, on_error: Callable[[OSError], None]
) -> tuple[Batch, Batch]:
    """Read up to ``limit`` waiting datagrams of ``sock``: (STUN, the rest),
    each in arrival order. ``on_error`` gets what a read raised (an ICMP
    error reported for an earlier send); reading goes on."""
    recvfrom_into = sock.recvfrom_into
    view = _buffers.view
    stun: Batch = []
    media: Batch = []
    for _ in range(limit):
        try:
            size, addr = recvfrom_into(view)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            on_error(exc)
            continue
        data = bytes(view[:size])
        # RFC 7983: STUN starts with 0-3
        (stun if size and data[0] < 4 else media).append((data, addr[:2]))
    return stun, media


class ConnectionSocket(asyncio.DatagramTransport):
    """A connection's own UDP socket, read in batches with STUN first; what
    aioice's ``StunProtocol`` (and pysfu's sender) use as its transport, in
    place of asyncio's."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
    ) -> None:
        super().__init__()
        self._loop = loop
        #: the socket (pysfu's sender writes to it directly, as to asyncio's)
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._closing = False
        self._reading = True
        #: readiness events handled, datagrams read, of them STUN
        self.wakeups = 0
        self.datagrams = 0
        self.stun = 0
        #: datagrams that could not be sent (the send buffer was full; the
        #: first one is logged)
        self.send_dropped = 0
        #: datagrams whose handler raised (the first one is logged)
        self.handler_errors = 0
        protocol.connection_made(self)
        loop.add_reader(self._fileno, self._read_ready)

    # -- asyncio.DatagramTransport

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            if not self.send_dropped:
                logger.warning(
                    "the send buffer of %s is full: datagrams are dropped"
                    " (counted in send_dropped)",
                    self._sock,
                )
            self.send_dropped += 1  # UDP: lost, as in a full network queue
        except OSError as exc:
            self._protocol.error_received(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self._reading = False
            self._loop.remove_reader(self._fileno)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fileno, self._read_ready)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._reading:
            self._loop.remove_reader(self._fileno)
        # as asyncio does: the protocol learns it on the next iteration
        self._loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        self.close()

    def _connection_lost(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()

    # -- reading

    def _read_ready(self) -> None:
        # read_batch inlined: this runs for every readiness event of every
        # connection, mostly for one or two datagrams
        recvfrom_into = self._sock.recvfrom_into
        view = _buffers.view
        stun: Batch | None = None
        media: Batch = []
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                size, addr = recvfrom_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported for an earlier send
                self._protocol.error_received(exc)
                continue
            data = view[:size].tobytes()
            if size and data[0] < 4:  # RFC 7983: STUN starts with 0-3
                if stun is None:
                    stun = []
                stun.append((data, addr))
            else:
                media.append((data, addr))
        self.wakeups += 1
        self.datagrams += len(media)
        received = self._protocol.datagram_received
        if stun is not None:  # consent answers first: never behind media
            self.datagrams += len(stun)
            self.stun += len(stun)
            media[:0] = stun
        for data, addr in media:
            if self._closing:
                return
            try:
                received(data, addr)
            except Exception:  # one bad datagram must not lose the rest
                self._handler_failed()

    def _handler_failed(self) -> None:
        if not self.handler_errors:
            logger.exception("a datagram handler failed on %s", self._sock)
        self.handler_errors += 1


def open_connection_socket(
    sock: socket.socket, protocol: asyncio.DatagramProtocol
) -> ConnectionSocket:
    """Serve ``protocol`` from ``sock`` (bound, any blocking mode) in the
    running loop."""
    sock.setblocking(False)
    return ConnectionSocket(asyncio.get_running_loop(), sock, protocol)
