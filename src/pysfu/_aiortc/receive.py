"""Receiving: decrypted RTP straight from the transport, no jitter buffer or decoder."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pylibsrtp
from aiortc import (
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensions

from ..accounting import metered
from ..rtp.extensions import extension_checks, find_extension
from ..rtp.header import RtpHeader, parse_header
from ..rtp.twcc import TransportFeedback
from .transports import _SRTP_BUFFER, cpu_account_of
from .udpmux import is_muxed
from .udpsock import arrival_time, realtime_to_monotonic

logger = logging.getLogger(__name__)

#: Gets a parsed RTP packet, its bytes, its arrival time (ms on the
#: ``time.monotonic()`` clock: when the kernel received it, if the socket
#: stamps datagrams, see :func:`.udpsock.arrival_time`) and ``now``
#: (``time.monotonic()``, read once here: the edge's clock).
RtpSink = Callable[[RtpHeader, bytes, int, float], None]
#: Gets an RTCP packet and ``now`` (``time.monotonic()``) when it arrived.
RtcpSink = Callable[[Any, float], Awaitable[None]]


def _extension_ids_of(extensions_map: Any) -> Any:
    """The negotiated ids an aiortc ``HeaderExtensionsMap`` holds (aiortc's
    ``HeaderExtensions`` attributes, each an id or ``None``)."""
    return getattr(extensions_map, "_HeaderExtensionsMap__ids")  # noqa: B009


def extension_checks_of(extensions_map: Any) -> list[int]:
    """:func:`pysfu.rtp.header.parse_header`'s ``checks`` for the ids configured in
    an aiortc ``HeaderExtensionsMap``."""
    return extension_checks(_extension_ids_of(extensions_map))


def header_extensions(header: RtpHeader, extensions_map: Any) -> HeaderExtensions:
    """aiortc's decoded ``HeaderExtensions`` of a parsed header, for code
    written against aiortc's ``RtpPacket``; ``extensions_map`` is the
    ``HeaderExtensionsMap`` of the transport it arrived on."""
    start = header.extension_start
    if start < 0:
        return HeaderExtensions()
    data = header.data
    profile = (data[start] << 8) | data[start + 1]
    decoded: HeaderExtensions = extensions_map.get(
        profile, data[start + 4 : header.payload_start]
    )
    return decoded


#: Datagrams held for the DTLS transport at most: a DTLS flight before ICE
#: completes, or SRTCP while its reader is busy. (SRTP, once keyed, does not
#: queue: :class:`RtpTap` delivers it directly.)
MAX_QUEUED_DATAGRAMS = 64
#: The same on a shared port (:mod:`.udpmux`), where only a peer that proved
#: its password reaches its queue, and on a connection's own socket once ICE
#: completed: a drain hands on a whole backlog at once (after a stall, every
#: NACK and report the peer sent meanwhile; a burst of data channel packets).
MAX_QUEUED_DATAGRAMS_SHARED = 512
#: The largest datagram queued: a DTLS record (16 KiB plus header and
#: expansion); WebRTC peers send at most about 1,500 bytes.
MAX_QUEUED_DATAGRAM = 17 * 1024

#: Distinct SSRCs a peer may send SRTP/SRTCP with (libsrtp keeps a stream
#: for each): a publisher uses two or three per track (media, RTX, FEC),
#: times three with simulcast, plus the SSRCs its RTCP reports come from.
MAX_INBOUND_SSRCS = 32

#: Packets without a transport-wide number after which a peer that negotiated
#: the extension is taken not to number them (aiortc never does).
UNNUMBERED_PACKETS_BEFORE_GIVING_UP = 64

#: aiortc's arrival times are milliseconds since the NTP epoch (1900).
_NTP_EPOCH_MS = 2_208_988_800_000


def monotonic_ms_of_ntp_ms(ntp_ms: int, offset: float) -> int:
    """An aiortc arrival time (wall clock, ms since 1900) on the
    ``time.monotonic()`` clock in ms, ``offset`` from
    :func:`.udpsock.realtime_to_monotonic`."""
    return round(ntp_ms - _NTP_EPOCH_MS + offset * 1000)


class RtpTap:
    """Diverts decrypted RTP of one DTLS transport to pysfu sinks.

    The stock path parses each packet, routes it to an ``RTCRtpReceiver`` and
    depacketizes, jitter-buffers and decodes it. The tap parses only the header
    (:func:`pysfu.rtp.header.parse_header`, which accepts what aiortc's parser
    accepts), keeps aiortc's routing and hands the header, the raw bytes and
    the arrival time to the sink registered for the receiver instead. Sinks
    are synchronous: a sink must never await, so one slow consumer cannot
    stall the receive loop.

    ``direct`` (default): once DTLS has produced SRTP keys, SRTP datagrams are
    decrypted and delivered straight from aioice's datagram callback instead
    of going through its ``asyncio.Queue`` and the DTLS transport's receive
    task (a task wake-up and a chain of awaits per packet). DTLS, SRTCP and
    STUN still take the stock path. aiortc's transport-level
    ``packetsReceived``/``bytesReceived`` then no longer count these packets.

    Packets carrying a transport-wide sequence number (when negotiated,
    see :func:`.sdp.register_transport_cc`) are recorded with their arrival
    time in :attr:`transport_feedback`, routed or not (a sender's probes
    are padding nobody consumes); :attr:`on_transport_feedback` is called
    at the first one, to start sending the feedback.
    """

    def __init__(self, transport: RTCDtlsTransport, *, direct: bool = True) -> None:
        self._transport = transport
        self._sinks: dict[int, RtpSink] = {}
        self.parse_errors = 0
        self.unrouted = 0
        self.sink_errors = 0
        self.rtcp_errors = 0
        #: SRTP packets that failed authentication/replay checks (direct path).
        self.srtp_errors = 0
        #: Arrival times of packets numbered transport-wide, to be reported.
        self.transport_feedback = TransportFeedback()
        #: Called (once) when the first such packet arrives; must not raise.
        self.on_transport_feedback: Callable[[], None] | None = None
        #: The SSRC of the last packet numbered transport-wide (the media
        #: source named in the feedback).
        self.transport_feedback_ssrc = 0
        self._transport_cc_id = 0
        self._unnumbered = 0
        self._checks: list[int] = []
        self._configure_checks()
        register = transport._register_rtp_receiver

        def register_rtp_receiver(receiver: Any, parameters: Any) -> None:
            register(receiver, parameters)  # configures aiortc's extension map
            self._configure_checks()

        transport._register_rtp_receiver = register_rtp_receiver  # type: ignore[method-assign]
        transport._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]
        self._handle_rtcp_stock = transport._handle_rtcp_data
        transport._handle_rtcp_data = self._handle_rtcp_data  # type: ignore[method-assign]
        #: Datagrams dropped before reaching aioice's receive queue, by reason
        #: (see :meth:`_bound_receive_queue`).
        self.datagrams_dropped: dict[str, int] = {}
        #: SSRCs of this peer libsrtp accepted a packet of (one stream each).
        self._inbound_ssrcs: set[int] = set()
        self._bound_receive_queue()
        if direct:
            self._divert_datagrams()

    def attach(self, receiver: RTCRtpReceiver, sink: RtpSink) -> None:
        self._sinks[id(receiver)] = sink

    def detach(self, receiver: RTCRtpReceiver) -> None:
        self._sinks.pop(id(receiver), None)

    def detach_all(self) -> None:
        self._sinks.clear()

    def _configure_checks(self) -> None:
        """What each negotiated header extension's value must look like, and
        which one is the transport-wide sequence number."""
        extensions_map = self._transport._rtp_header_extensions_map
        self._checks = extension_checks_of(extensions_map)
        ids = _extension_ids_of(extensions_map)
        self._transport_cc_id = ids.transport_sequence_number or 0
        self._unnumbered = 0

    def _drop(self, reason: str) -> None:
        dropped = self.datagrams_dropped
        if reason not in dropped:
            # the connection's name, not the connection: a handler may keep
            # the record (pytest's log capture, a MemoryHandler), and with it
            # the connection, this tap and the whole peer connection
            # a leaving peer's media still in flight is no news: DEBUG
            logger.log(
                logging.DEBUG if reason == "closed" else logging.WARNING,
                "ICE port of %s: dropping datagrams (%s), counted from now",
                str(self._transport.transport._connection),
                reason,
            )
            dropped[reason] = 0
        dropped[reason] += 1

    def _new_ssrc_refused(self, data: bytes) -> bool:
        """Whether an SRTP/SRTCP datagram is of an SSRC beyond the cap.

        libsrtp keeps a stream (state and replay window) for each SSRC whose
        packet authenticates, and never forgets one: a peer sending random
        SSRCs through its own SRTP session grew the server without limit. The
        SSRCs a peer used are counted once their packet decrypted; beyond
        :data:`MAX_INBOUND_SSRCS`, a packet of a new SSRC is dropped before
        libsrtp sees it.
        """
        if len(self._inbound_ssrcs) < MAX_INBOUND_SSRCS or len(data) < 12:
            return False  # (too short for libsrtp to take anyway)
        rtcp = 191 < data[1] < 209  # RFC 5761: the sender's SSRC at 4, not 8
        offset = 4 if rtcp else 8
        ssrc = int.from_bytes(data[offset : offset + 4], "big")
        return ssrc not in self._inbound_ssrcs

    def _bound_receive_queue(self) -> None:
        """Keep what anyone can send to the server's ICE port from piling up.

        aioice queues every datagram that is not STUN in an unbounded
        ``asyncio.Queue``, which nothing reads until ICE completes: junk sent
        to a pending participant's port stayed there (1 GB in 22 s, still
        referenced after the participant left). Only DTLS and RTP/RTCP (RFC
        7983 demultiplexing) of a plausible size are queued, at most
        :data:`MAX_QUEUED_DATAGRAMS` at a time (:data:`MAX_QUEUED_DATAGRAMS_SHARED`
        on a shared port, or once ICE completed: a drained socket hands on
        a whole batch at once) and nothing once the connection
        closes (what it held is dropped then); the rest is dropped, counted
        by reason and logged once.
        """
        conn = self._transport.transport._connection
        queue = conn._queue
        queue_datagram = conn.data_received
        muxed = is_muxed(conn)
        nominated = conn._nominated
        drop = self._drop
        new_ssrc_refused = self._new_ssrc_refused

        def data_received(data: bytes, component: int) -> None:
            first = data[0] if data else 0
            if not (19 < first < 64 or 127 < first < 192):
                drop("not_dtls_or_rtp")
            elif len(data) > MAX_QUEUED_DATAGRAM:
                drop("too_large")
            elif conn._closing:
                drop("closed")
            elif queue.qsize() >= (
                # a socket (udpsock) hands on up to 32 media datagrams per loop
                # iteration, STUN besides; before
                # ICE completes, anyone may be sending to a connection's port
                MAX_QUEUED_DATAGRAMS_SHARED
                if muxed or nominated
                else MAX_QUEUED_DATAGRAMS
            ):
                drop("queue_full")
            elif first > 127 and new_ssrc_refused(data):
                drop("too_many_ssrcs")
            else:
                queue_datagram(data, component)

        close = conn.close

        async def close_and_drain() -> None:
            await close()
            while not queue.empty():  # what nobody will read any more
                queue.get_nowait()
            queue.put_nowait(None)  # aioice's end mark, for a reader not yet woken

        conn.data_received = data_received  # type: ignore[method-assign]
        conn.close = close_and_drain  # type: ignore[method-assign]

    def _divert_datagrams(self) -> None:
        dtls = self._transport
        conn = dtls.transport._connection
        queue_datagram = conn.data_received
        deliver = self._deliver
        connected = DtlsState.CONNECTED

        shortcut: list[Any] = []  # the protocols whose STUN parse we skip
        inbound_ssrcs = self._inbound_ssrcs

        def data_received(data: bytes, component: int) -> None:
            # SRTP, not SRTCP (RFC 5761 payload types 192-208), once keyed
            srtp = dtls._rx_srtp
            if len(data) > _SRTP_BUFFER and 127 < data[0] < 192:
                # libsrtp's buffer cannot take it and pylibsrtp raises
                # ValueError, which would end aiortc's receive task (and the
                # connection) if the datagram took the stock path
                self.srtp_errors += 1
                return
            if (
                srtp is None
                or len(data) < 12
                or not 127 < data[0] < 192
                or 191 < data[1] < 209
                or dtls._state != connected
            ):
                queue_datagram(data, component)
                return
            if not shortcut:
                shortcut.extend(conn._protocols)
                for protocol in shortcut:
                    if hasattr(protocol, "local_candidate"):
                        _skip_stun_parse(protocol, data_received)
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc not in inbound_ssrcs and len(inbound_ssrcs) >= MAX_INBOUND_SSRCS:
                self._drop("too_many_ssrcs")
                return
            try:
                plain = srtp.unprotect(data)
            except (pylibsrtp.Error, ValueError):  # forged, replayed, > 1500 bytes
                self.srtp_errors += 1
                return
            inbound_ssrcs.add(ssrc)
            # the kernel's arrival time, not this moment: the time the
            # datagram waited for a busy loop is not network queueing
            arrival = arrival_time()
            if arrival is None:
                arrival = time.monotonic()
            deliver(plain, int(arrival * 1e6))

        conn.data_received = data_received  # type: ignore[method-assign]

    def _deliver(self, data: bytes, arrival_time_us: int) -> None:
        # Never raises: an exception escaping into aiortc's receive loop (or
        # asyncio's datagram callback) would stop this publisher for good.
        transport = self._transport
        packet = parse_header(data, self._checks)
        if packet is None:
            self.parse_errors += 1
            return
        try:
            if self._transport_cc_id:
                self._record_transport_sequence(packet, data, arrival_time_us)
            receiver = transport._rtp_router.route_rtp(packet)  # type: ignore[arg-type]
            sink = self._sinks.get(id(receiver)) if receiver is not None else None
            if sink is None:
                self.unrouted += 1
                return
            sink(packet, data, arrival_time_us // 1000, time.monotonic())
        except Exception:
            self.sink_errors += 1

    def _record_transport_sequence(
        self, packet: RtpHeader, data: bytes, arrival_time_us: int
    ) -> None:
        at = find_extension(data, packet, self._transport_cc_id)
        if at < 0:  # (its value is two bytes: parse_header checked)
            if not self.transport_feedback.received:
                # negotiated, yet its packets carry no number (aiortc): stop
                # looking until the next negotiation
                self._unnumbered += 1
                if self._unnumbered >= UNNUMBERED_PACKETS_BEFORE_GIVING_UP:
                    self._transport_cc_id = 0
            return
        feedback = self.transport_feedback
        if not feedback.received and self.on_transport_feedback is not None:
            self.on_transport_feedback()
        feedback.record((data[at] << 8) | data[at + 1], arrival_time_us)
        self.transport_feedback_ssrc = packet.ssrc

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        # decrypted on aiortc's path: libsrtp has a stream for its SSRC now
        self._inbound_ssrcs.add(int.from_bytes(data[8:12], "big"))
        self._deliver(
            data,
            1000 * monotonic_ms_of_ntp_ms(arrival_time_ms, realtime_to_monotonic()),
        )

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self._inbound_ssrcs.add(int.from_bytes(data[4:8], "big"))
        # aiortc's RTCP routing lets some malformed packets raise (a REMB
        # announcing more SSRCs than it holds: struct.error), which would end
        # the receive loop as above.
        try:
            await metered(
                cpu_account_of(self._transport), "rtcp", self._handle_rtcp_stock(data)
            )
        except Exception:
            self.rtcp_errors += 1


def _skip_stun_parse(
    protocol: Any, data_received: Callable[[bytes, int], None]
) -> None:
    """Hand RTP/RTCP datagrams of an aioice protocol straight to ``data_received``.

    aioice tries to parse every datagram as STUN and takes the ``ValueError``
    as "not STUN": an exception per media packet. STUN's first two bits are
    0 (RFC 5389 section 6) while RTP and RTCP start with version 2 (first
    byte 128-191), so those can skip the attempt.
    """
    stock = protocol.datagram_received
    component = protocol.local_candidate.component

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            data_received(data, component)
        else:
            stock(data, addr)

    protocol.datagram_received = datagram_received


def take_over_receiver(
    receiver: RTCRtpReceiver,
    on_parameters: Callable[[RTCRtpReceiveParameters], None],
    on_rtcp: RtcpSink,
) -> None:
    """Stop aiortc from decoding a receiver's track; pysfu consumes it instead.

    Must be called before aiortc calls ``receiver.receive()`` (that is, from
    the peer connection's ``track`` event). The decoder thread and RTCP task
    that ``receive()`` would start are never created; the receiver is only
    registered with its transport so RTP and RTCP get routed to it.
    """
    registered: list[RTCDtlsTransport] = []

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        transport = receiver.transport
        if not registered:
            transport._register_rtp_receiver(receiver, parameters)
            registered.append(transport)
        on_parameters(parameters)

    async def stop() -> None:
        for transport in registered:
            transport._unregister_rtp_receiver(receiver)
        registered.clear()

    receiver.receive = receive  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]

    async def handle_rtcp(packet: Any) -> None:
        await on_rtcp(packet, time.monotonic())

    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


@dataclass
class SenderHooks:
    """What pysfu plugs into a taken-over sender (see :func:`take_over_sender`).

    The fields are swapped when a transceiver is reused for another track.
    """

    on_parameters: Callable[[RTCRtpSendParameters], None] | None = None
    on_rtcp: RtcpSink | None = None
    registered: list[RTCDtlsTransport] = field(default_factory=list)


def take_over_sender(sender: RTCRtpSender) -> SenderHooks:
    """Keep aiortc's encoder and RTP/RTCP tasks off a sender.

    pysfu writes packets for this sender itself (through :class:`RtpOutput`),
    so ``send()`` only registers the sender with its transport, which routes
    the subscriber's RTCP feedback (PLI, NACK, receiver reports) to it, and
    passes the negotiated parameters on. aiortc calls ``send()`` after every
    negotiation in which the transceiver sends.
    """
    hooks = SenderHooks()

    async def send(parameters: RTCRtpSendParameters) -> None:
        transport = sender.transport
        if not hooks.registered:
            transport._register_rtp_sender(sender, parameters)
            hooks.registered.append(transport)
        if hooks.on_parameters is not None:
            hooks.on_parameters(parameters)

    async def stop() -> None:
        for transport in hooks.registered:
            transport._unregister_rtp_sender(sender)
        hooks.registered.clear()

    async def handle_rtcp(packet: Any) -> None:
        if hooks.on_rtcp is not None:
            await hooks.on_rtcp(packet, time.monotonic())

    sender.send = send  # type: ignore[method-assign]
    sender.stop = stop  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    return hooks
