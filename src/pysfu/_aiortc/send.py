"""Sending: encrypt and hand to the socket without awaiting, no encoder."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp._binding import ffi as _srtp_ffi

from .transports import (
    _CONNECTED,
    _RTP_HEADER,
    _SEND_BUFFER,
    UDP_PAYLOAD_LIMIT,
    _srtp_protect,
)

#: The longest authentication tag of the SRTP profiles aiortc negotiates
#: (AEAD AES-GCM: 16 bytes; AES-CM with HMAC-SHA1-80: 10): the overhead
#: assumed until the first packet shows the negotiated profile's.
_LONGEST_SRTP_TAG = 16


_buffers = threading.local()


def _send_buffer() -> tuple[Any, memoryview, Any]:
    """The buffer packets are encrypted in, shared by the outputs of a thread.

    A send copies, encrypts and hands the datagram to the socket without
    yielding, so the outputs of one event loop never use it at the same time;
    one buffer as large as a UDP datagram per output would cost 64 KiB per
    participant.
    """
    found: tuple[Any, memoryview, Any] | None = getattr(_buffers, "send", None)
    if found is None:
        cdata = _srtp_ffi.new("unsigned char[]", _SEND_BUFFER)
        found = (cdata, memoryview(_srtp_ffi.buffer(cdata)), _srtp_ffi.new("int *"))
        _buffers.send = found
    return found


class RtpOutput:
    """Encrypts and sends RTP/RTCP on one DTLS transport, synchronously.

    aiortc's ``_send_rtp`` is a chain of coroutines; for UDP it never really
    suspends, but awaiting it per subscriber per packet costs time and lets a
    failing subscriber raise into the publisher's receive loop. Here a send is
    a plain call: it returns ``False`` (and counts a drop) when the transport
    is not connected yet, is gone, or its socket buffer is full, and when the
    packet is too large for a UDP datagram once encrypted (also counted in
    :attr:`too_large`). Packets of any size up to that are sent: the network
    fragments what its MTU cannot carry, as it would for the publisher.

    The hot path, :meth:`send_rewritten`, copies a packet once into a buffer
    (one per thread, see ``_send_buffer``), rewrites the fixed header there,
    encrypts it in place with libsrtp (pylibsrtp's own ``protect`` allocates
    and copies twice more) and hands a view of it to the UDP socket: no
    per-packet Python objects beyond the view.
    """

    #: A subscriber whose socket holds more than this many unsent bytes is
    #: slow; its packets are dropped rather than buffered without bound.
    max_write_buffer = 1 << 20

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._transport = transport
        self.dropped = 0
        #: Of the drops, packets too large for a UDP datagram once encrypted.
        self.too_large = 0
        # what the negotiated SRTP profile adds to a packet (known after the first)
        self._srtp_overhead = _LONGEST_SRTP_TAG
        # (socket.sendto, remote address, libsrtp context, the Session owning
        # it, the nominated pair they were taken from)
        self._target: tuple[Callable[[Any, Any], int], Any, Any, Any, Any] | None = None
        # aioice's table of nominated pairs (one dict for the connection's
        # life): a peer that switches pairs (a new network, an ICE restart)
        # replaces its entry, and the cached target with it
        self._nominated: dict[int, Any] = transport.transport._connection._nominated
        # the pair the last target was taken from, to tell a new path
        self._last_pair: Any = None
        #: How many times packets started going to a new nominated pair.
        self.path_changes = 0
        #: Called (soon, from the event loop) when packets start going to a
        #: new nominated pair: the peer moved (a new network, an ICE restart)
        #: and whatever was sent meanwhile went to the old path.
        self.on_path_change: Callable[[], None] | None = None
        self._cdata, self._memory, self._length = _send_buffer()

    @property
    def max_rtp_size(self) -> int:
        """The longest RTP packet that still fits one UDP datagram once
        encrypted with the negotiated SRTP profile."""
        return UDP_PAYLOAD_LIMIT - self._srtp_overhead

    @property
    def connected(self) -> bool:
        return self._transport._state == DtlsState.CONNECTED

    def _socket(self) -> tuple[Any, tuple[str, int], Any] | None:
        dtls = self._transport
        if dtls._state != DtlsState.CONNECTED:
            return None
        pair = self._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        udp = pair.protocol.transport
        if udp.is_closing():
            return None
        buffered = getattr(udp, "get_write_buffer_size", None)
        if buffered is not None and buffered() > self.max_write_buffer:
            return None
        return udp, pair.remote_addr, pair

    def _resolve(self) -> tuple[Callable[[Any, Any], int], Any, Any, Any, Any] | None:
        """Look up socket, address and SRTP context once; kept while the DTLS
        transport stays connected, the nominated pair stays the same and
        sends succeed."""
        found = self._socket()
        if found is None or self._transport._tx_srtp is None:
            return None
        udp, addr, pair = found
        sock = getattr(udp, "_sock", None)  # asyncio's socket: skips its checks
        if sock is not None:
            sendto = sock.sendto
        else:  # another loop (uvloop): its transport may queue what it cannot
            # send at once, so it gets a copy, not a view of the reused buffer
            def sendto(data: Any, addr: Any) -> int:
                udp.sendto(bytes(data), addr)
                return len(data)

        session = self._transport._tx_srtp
        self._target = (sendto, addr, session._srtp[0], session, pair)
        if pair is not self._last_pair:
            if self._last_pair is not None:
                self.path_changes += 1
                if self.on_path_change is not None:
                    # not from inside the caller's send loop
                    asyncio.get_running_loop().call_soon(self.on_path_change)
            self._last_pair = pair
        return self._target

    def send_rewritten(
        self,
        data: bytes | bytearray,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
    ) -> bool:
        """Send a copy of RTP packet ``data`` with PT, sequence number,
        timestamp and SSRC replaced (marker, CSRCs, extensions and payload kept).
        """
        target = self._target
        if (
            target is None
            or self._transport._state is not _CONNECTED
            or self._nominated.get(1) is not target[4]
        ):
            target = self._resolve()
        length = len(data)
        if target is None or length < 12:
            self.dropped += 1
            return False
        if length > UDP_PAYLOAD_LIMIT:
            return self._too_large()
        memory = self._memory
        memory[:length] = data
        memory[1] = (data[1] & 0x80) | payload_type
        _RTP_HEADER.pack_into(memory, 2, sequence_number, timestamp, ssrc)
        # _protect_and_send, inlined: this runs per packet per subscriber
        length_p = self._length
        length_p[0] = length
        if _srtp_protect(target[2], self._cdata, length_p):
            self.dropped += 1
            return False
        protected = length_p[0]
        self._srtp_overhead = protected - length
        if protected > UDP_PAYLOAD_LIMIT:
            return self._too_large()
        try:
            target[0](memory[:protected], target[1])
        except OSError as exc:  # buffer full (EAGAIN), socket closed, unreachable
            if exc.errno == errno.EMSGSIZE:
                return self._too_large()
            self._target = None
            self.dropped += 1
            return False
        return True

    def _protect_and_send(
        self, target: tuple[Any, Any, Any, Any, Any], length: int
    ) -> bool:
        """Encrypt the ``length`` bytes in the buffer in place and send them."""
        length_p = self._length
        length_p[0] = length
        if _srtp_protect(target[2], self._cdata, length_p):
            self.dropped += 1
            return False
        protected = length_p[0]
        self._srtp_overhead = protected - length
        if protected > UDP_PAYLOAD_LIMIT:
            return self._too_large()
        try:
            target[0](self._memory[:protected], target[1])
        except OSError as exc:  # buffer full (EAGAIN), socket closed, unreachable
            if exc.errno == errno.EMSGSIZE:
                return self._too_large()
            self._target = None
            self.dropped += 1
            return False
        return True

    def _too_large(self) -> bool:
        self.dropped += 1
        self.too_large += 1
        return False

    def send_rtp(self, data: bytes | bytearray) -> bool:
        """Send RTP packet ``data`` as it is."""
        target = self._target
        if (
            target is None
            or self._transport._state is not _CONNECTED
            or self._nominated.get(1) is not target[4]
        ):
            target = self._resolve()
        length = len(data)
        if target is None or length < 12:
            self.dropped += 1
            return False
        if length > UDP_PAYLOAD_LIMIT:
            return self._too_large()
        self._memory[:length] = data
        return self._protect_and_send(target, length)

    def send_rtcp(self, data: bytes) -> bool:
        target = self._socket()
        if target is None:
            self.dropped += 1
            return False
        protected = self._transport._tx_srtp.protect_rtcp(data)
        target[0].sendto(protected, target[1])
        return True
