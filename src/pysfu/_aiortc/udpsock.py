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
are read and classified as they are read (RFC 7983: STUN starts with 0-3).
STUN is handed on at once, before any media; media is handed on at most
:data:`MAX_MEDIA_PER_WAKEUP` per loop iteration (so that a flooding socket
cannot take an iteration from the others), the rest held in the socket's
backlog (at most :data:`MAX_PENDING_MEDIA`, beyond it dropped and counted)
and handed on in the next iterations. Media is no longer left in the kernel
for the next iteration: the kernel's buffer then filled behind it and
dropped whatever came next, consent answers included (a flooded socket
lost 99 of 100 STUN probes; ``python -m benchmarks.udpmux --flood``).

Each datagram is read with ``recvmsg`` and carries the time the kernel
received it (``SO_TIMESTAMPNS``), put on the ``time.monotonic()`` clock:
the receive path hands it to the REMB estimator (:func:`arrival_time`), so
that the time a datagram waited for a busy event loop does not read as
network queueing (issue 14).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Datagrams read from one connection's socket per readiness event at most
#: (STUN included: a flood of STUN cannot hold the loop either). Reading
#: and classifying one costs about 1 µs, handing it on (SRTP, forwarding)
#: tens of µs: what is read beyond what is handed on waits in the backlog.
#: Read faster than a flood arrives, the kernel's buffer does not overflow
#: and drop consent answers: 512 per iteration of 20 ms is 25,000/s.
MAX_DATAGRAMS_PER_WAKEUP = 512
#: Media (non-STUN) datagrams handed on per socket per loop iteration at
#: most; the rest waits in the socket's backlog for the next iterations,
#: while the loop serves the other ready sockets. asyncio runs each ready
#: socket's callback once per iteration, so this cap is what shares an
#: iteration between a flooding socket and the others. 32: a 1,200-byte media
#: stream of up to 7.7 Mbit/s (a simulcast publisher's three layers) fits in
#: iterations of 40 ms (pysfu's loop under ``stress-ng --cpu 2`` lagged
#: 10-40 ms), so a legitimate peer is not held back in steady state; a
#: flooder gets 32 handlings per iteration where it got 256.
MAX_MEDIA_PER_WAKEUP = 32
#: Media datagrams read but not handed on yet that one socket holds at most
#: (600 KiB of 1,200-byte datagrams, about what the kernel's buffer held
#: before: aioice asks for 256 KiB, which Linux doubles); beyond it media is
#: dropped as it is read, counted in ``media_dropped``, while STUN still
#: gets through.
MAX_PENDING_MEDIA = 512
_MAX_DATAGRAM = 65536

#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS, asm-generic and x86; Python's
#: socket module does not name it): the kernel stamps each datagram with the
#: CLOCK_REALTIME time it arrived, a struct timespec (two C longs).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)

Address = tuple[str, int]
#: (data, address, the kernel's arrival time on the ``time.monotonic()``
#: clock or ``None`` if the socket does not stamp datagrams)
Batch = list[tuple[bytes, Address, float | None]]


class _Buffers(threading.local):
    """One receive buffer per thread (every batch is copied out before it is
    handed on), not 64 KiB per connection; and the arrival time of the
    datagram this thread is handing on."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_MAX_DATAGRAM))
        self.buffers = [self.view]
        self.arrival: float | None = None


_buffers = _Buffers()


def enable_kernel_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram ``sock`` receives with its
    arrival time (``SO_TIMESTAMPNS``); whether it will (Linux only; not with
    ``PYSFU_KERNEL_TIMESTAMPS=0`` in the environment, which
    ``benchmarks.remb_jitter`` uses to compare)."""
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("PYSFU_KERNEL_TIMESTAMPS") == "0"
    ):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def realtime_to_monotonic() -> float:
    """What to add to a ``CLOCK_REALTIME`` time (s) to put it on the
    ``time.monotonic()`` clock.

    Kernel receive timestamps are wall-clock time, which NTP or an
    administrator may step; the estimator needs a clock that never jumps,
    as pysfu's ``now`` is. Read once per batch (two vDSO calls): a step
    moves the offset between batches, so only a batch read across the step
    itself sees a wrong offset, for its datagrams alone."""
    return time.monotonic() - time.time()


def kernel_arrival(
    ancdata: list[tuple[int, int, bytes]], offset: float
) -> float | None:
    """The arrival time (``time.monotonic()`` clock) in a datagram's ancillary
    data, ``offset`` from :func:`realtime_to_monotonic`; ``None`` if the
    kernel gave none."""
    for level, kind, data in ancdata:
        if (
            level == socket.SOL_SOCKET
            and kind == SO_TIMESTAMPNS
            and len(data) >= _TIMESPEC.size
        ):
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds * 1e-9 + offset)
    return None


def arrival_time() -> float | None:
    """The kernel's arrival time, on the ``time.monotonic()`` clock, of the
    datagram a pysfu socket reader of this thread is handing on now;
    ``None`` outside of that or if its socket does not stamp datagrams
    (then the receive path takes the time itself, as it did before).

    The receive path reads it from within the protocol's
    ``datagram_received`` (aioice's signature has no room for it)."""
    return _buffers.arrival


def set_arrival(arrival: float | None) -> None:
    """What :func:`arrival_time` answers in this thread from now on: set by
    a reader before it hands on a datagram, ``None`` after its batch."""
    _buffers.arrival = arrival


def read_batch(
    sock: socket.socket,
    limit: int,
    on_error: Callable[[OSError], None],
    media_limit: int | None = None,
) -> tuple[Batch, Batch]:
    """Read up to ``limit`` waiting datagrams of ``sock``, of them up to
    ``media_limit`` (default: ``limit``) not STUN: (STUN, the rest), each in
    arrival order with its arrival time (:func:`arrival_time`). ``on_error``
    gets what a read raised (an ICMP error reported for an earlier send);
    reading goes on."""
    recvmsg_into = sock.recvmsg_into
    buffers = _buffers.buffers
    view = _buffers.view
    offset = realtime_to_monotonic()
    stun: Batch = []
    media: Batch = []
    media_left = limit if media_limit is None else media_limit
    for _ in range(limit):
        try:
            size, ancdata, _flags, addr = recvmsg_into(buffers, _ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            on_error(exc)
            continue
        data = view[:size].tobytes()
        arrival = kernel_arrival(ancdata, offset) if ancdata else None
        # RFC 7983: STUN starts with 0-3
        if size and data[0] < 4:
            stun.append((data, addr[:2], arrival))
        else:
            media.append((data, addr[:2], arrival))
            media_left -= 1
            if not media_left:
                break
    return stun, media


class ConnectionSocket(asyncio.DatagramTransport):
    """A connection's own UDP socket, read in batches, STUN handed on as it
    is read and media at most :data:`MAX_MEDIA_PER_WAKEUP` per loop
    iteration; what aioice's ``StunProtocol`` (and pysfu's sender) use as
    its transport, in place of asyncio's."""

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
        #: media datagrams dropped as they were read, the backlog being full
        #: (the first one is logged)
        self.media_dropped = 0
        #: media read but not handed on yet, oldest first
        self._backlog: deque[tuple[bytes, Address, float | None]] = deque()
        self._drain_scheduled = False
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
            if self._backlog and not self._drain_scheduled:
                self._drain_scheduled = True
                self._loop.call_soon(self._drain)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._backlog.clear()
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
        recvmsg_into = self._sock.recvmsg_into
        local = _buffers
        buffers = local.buffers
        view = local.view
        offset = realtime_to_monotonic()
        stun: Batch | None = None
        media: Batch = []
        backlog = self._backlog
        # media read beyond what is handed on now waits in the backlog; read
        # anyway once it is full (and dropped): what stays in the kernel
        # makes it drop what comes next, STUN included
        room = MAX_PENDING_MEDIA - len(backlog) + MAX_MEDIA_PER_WAKEUP
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                size, ancdata, _flags, addr = recvmsg_into(buffers, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported for an earlier send
                self._protocol.error_received(exc)
                continue
            if size and view[0] < 4:  # RFC 7983: STUN starts with 0-3
                if stun is None:
                    stun = []
                arrival = kernel_arrival(ancdata, offset) if ancdata else None
                stun.append((view[:size].tobytes(), addr, arrival))
            elif len(media) < room:
                arrival = kernel_arrival(ancdata, offset) if ancdata else None
                media.append((view[:size].tobytes(), addr, arrival))
            else:
                self._media_dropped()
        self.wakeups += 1
        self.datagrams += len(media)
        if stun is not None:  # consent answers first: never behind media
            self.datagrams += len(stun)
            self.stun += len(stun)
            self._hand_on(stun)
            if self._closing:
                return
        if backlog or self._drain_scheduled or len(media) > MAX_MEDIA_PER_WAKEUP:
            backlog.extend(media)  # handed on by _drain, in order
            if not self._drain_scheduled:
                self._drain()
            return
        self._hand_on(media)  # the common case: all at once

    def _hand_on(self, batch: Batch) -> None:
        """Give each datagram of ``batch`` to the protocol, with its arrival
        time readable through :func:`arrival_time`, until the socket closes."""
        local = _buffers
        received = self._protocol.datagram_received
        try:
            for data, addr, arrival in batch:
                if self._closing:
                    return
                local.arrival = arrival
                try:
                    received(data, addr)
                except Exception:  # one bad datagram must not lose the rest
                    self._handler_failed()
        finally:
            local.arrival = None

    def _drain(self) -> None:
        """Hand on up to :data:`MAX_MEDIA_PER_WAKEUP` of the backlog; the rest
        in the next loop iteration."""
        self._drain_scheduled = False
        if self._closing or not self._reading:
            return  # resume_reading() drains again
        backlog = self._backlog
        # taken off first: what is left when the socket closes is cleared
        self._hand_on(
            [backlog.popleft() for _ in range(min(len(backlog), MAX_MEDIA_PER_WAKEUP))]
        )
        if backlog and not self._closing:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _media_dropped(self) -> None:
        if not self.media_dropped:
            logger.warning(
                "%s receives media faster than it is handed on: dropping what"
                " its backlog cannot hold (counted in media_dropped)",
                self._sock,
            )
        self.media_dropped += 1

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
    enable_kernel_timestamps(sock)
    return ConnectionSocket(asyncio.get_running_loop(), sock, protocol)
