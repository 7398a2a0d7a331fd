"""One subscriber's view of a forwarded track."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _aiortc as rtc
from ..rtp.extensions import rewrite_extensions
from ..rtp.header import payload_offset, rewrite_header
from . import retransmit
from .congestion import SubscriberEstimate
from .ports import Cancellable, RewritingSink, RtpSink, Source
from .retransmit import RetransmitLimiter
from .simulcast import LayerSelector, Vp8Renumbering

__all__ = [
    "PREVIOUS_SOURCE",
    "DownTrack",
    "DownTrackStats",
    "RewritingSink",
    "RtpSink",
    "StreamPosition",
]
logger = logging.getLogger(__name__)

# A jump larger than this in the publisher's sequence numbers means the source
# restarted (new encoder, reconnect): re-base instead of leaving a hole.
_SEQUENCE_JUMP = 3000

#: A NACK for a packet sent before the last change of source (e.g. a
#: simulcast layer switch): its number now maps onto the new source.
PREVIOUS_SOURCE = "previous_source"


class _Rewriting:
    """Gives a plain :class:`RtpSink` the :class:`RewritingSink` interface."""

    def __init__(self, sink: RtpSink) -> None:
        self.sink = sink
        self.send_rtp = sink.send_rtp
        self.send_rtcp = sink.send_rtcp

    @property
    def max_rtp_size(self) -> int:
        """A plain sink sends what it gets; a UDP datagram is the limit."""
        return rtc.UDP_PAYLOAD_LIMIT

    def send_rewritten(
        self,
        data: bytes | bytearray,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
    ) -> bool:
        return self.sink.send_rtp(
            rewrite_header(data, payload_type, sequence_number, timestamp, ssrc)
        )


@dataclass
class DownTrackStats:
    """Counters of one subscriber's copy of a track."""

    packets_sent: int = 0
    bytes_sent: int = 0
    #: Packets not sent, for any reason (too large ones included).
    dropped: int = 0
    #: Packets not sent because they do not fit a UDP datagram once encrypted.
    dropped_too_large: int = 0
    #: Late packets of a new source from before the switch to it (their
    #: numbers went to the previous source's packets).
    dropped_before_switch: int = 0
    errors: int = 0
    retransmitted: int = 0
    #: Retransmissions held back for the budget to refill, then sent.
    retransmissions_paced: int = 0
    nacks_received: int = 0
    keyframe_requests_received: int = 0
    #: NACKed packets not resent, by reason (see :mod:`.retransmit`):
    #: ``too_soon``, ``queue_full`` (over budget with the pacing queue full),
    #: ``not_in_history``, ``no_source``,
    #: ``unknown_payload_type``.
    retransmissions_refused: dict[str, int] = field(default_factory=dict)
    fraction_lost: float = 0.0
    packets_lost: int = 0
    jitter: int = 0
    round_trip_time: float | None = None
    remb_bitrate: int | None = None
    #: Simulcast: the rid of the layer being sent (``None``: none, e.g.
    #: paused below the lowest layer) and how often it changed.
    layer: str | None = None
    layer_switches: int = 0


@dataclass(frozen=True)
class StreamPosition:
    """The end of an outgoing stream: what a successor on its SSRC continues."""

    ssrc: int
    next_sequence_number: int
    last_timestamp: int
    last_sent_at: float | None


class DownTrack:
    """Rewrites a forwarded track for one subscriber and sends it.

    Each subscriber sees one continuous RTP stream with the SSRC its SDP
    announced, its own negotiated payload types and extension ids, and
    sequence numbers and timestamps that continue smoothly across a change of
    source (publisher reconnect, track replacement) instead of jumping. Video
    starts on a keyframe: until one arrives nothing is sent and the forwarder
    is asked for one.

    Time is passed in (``now``, on the forwarder's clock) with every input
    that needs it; only a paced retransmission waits on the forwarder's
    scheduler (:attr:`~pysfu.forwarding.Forwarder.call_at`).
    """

    def __init__(
        self,
        forwarder: Source,
        output: RtpSink,
        ssrc: int,
        *,
        subscriber_id: str,
        resume: StreamPosition | None = None,
    ) -> None:
        """``resume``: where the previous stream on the same SSRC stopped (a
        reused transceiver); numbering carries on from there, since a receiver
        treats one SSRC as one stream."""
        self.forwarder = forwarder
        self.ssrc = ssrc
        self.subscriber_id = subscriber_id
        self.kind = forwarder.kind
        self.stats = DownTrackStats()
        self.active = False
        self.closed = False
        #: Run by :meth:`source_closed`: the owner detaches this copy.
        self.on_source_closed: Callable[[DownTrack], None] | None = None
        self.waiting_keyframe = forwarder.kind == "video"
        self._output: RewritingSink = (
            output if hasattr(output, "send_rewritten") else _Rewriting(output)  # type: ignore[assignment]
        )
        self._pt_map: dict[int, int] = {}
        self._extension_table: Sequence[int] | None = None
        #: the subscriber's id of abs-send-time, restamped at send (0: none)
        self._abs_send_time_id = 0
        self._clock_rate = 90000 if forwarder.kind == "video" else 48000
        # rewrite state
        self._source_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_in_seq = 0
        self._last_in_ts = 0
        self._next_seq = random.getrandbits(15)  # < 32768: no early rollover
        self._last_out_ts = random.getrandbits(32)
        self._last_sent_at: float | None = None
        if resume is not None and resume.ssrc == ssrc:
            self._next_seq = resume.next_sequence_number
            self._last_out_ts = resume.last_timestamp
            self._last_sent_at = resume.last_sent_at
        # RTCP
        self._lsr = 0
        self._lsr_time = 0.0
        #: The subscriber's latest REMB covering this stream, if any.
        self.estimate: SubscriberEstimate | None = None
        self._retransmits = RetransmitLimiter(forwarder.config.retransmit)
        self._retransmits.update_send_rate(0, forwarder.clock())
        self._paced: dict[int, None] = {}  # out sequence numbers, in NACK order
        self._pacing: Cancellable | None = None
        #: Simulcast: which layer this subscriber gets (unused otherwise).
        self.layers = LayerSelector(forwarder.config.simulcast_policy)
        self._layer_requested_at: float | None = None
        self._vp8: Vp8Renumbering | None = None
        self._rebased_at: int | None = None  # first out seq of the source

    def position(self) -> StreamPosition:
        """Where this stream stands, for a successor on the same SSRC."""
        return StreamPosition(
            self.ssrc, self._next_seq, self._last_out_ts, self._last_sent_at
        )

    def configure(
        self,
        payload_types: Mapping[int, int],
        extension_table: Sequence[int] | None,
        clock_rate: int,
    ) -> None:
        """Apply what negotiation with the subscriber produced and start sending.

        ``payload_types`` maps the publisher's payload types to the
        subscriber's; ``extension_table`` renumbers header extensions (see
        :func:`~pysfu.rtp.extensions.extension_id_table`).
        """
        self._pt_map = dict(payload_types)
        self._extension_table = extension_table
        source_id = self.forwarder.abs_send_time_id
        self._abs_send_time_id = (
            extension_table[source_id]
            if extension_table is not None and source_id
            else source_id
        )
        self._clock_rate = clock_rate
        was_active, self.active = self.active, not self.closed
        if self.active and not was_active and self.waiting_keyframe:
            self.forwarder.request_keyframe()

    # ------------------------------------------------------------------
    # the hot path

    def forward(
        self,
        data: bytes,
        sequence_number: int,
        timestamp: int,
        payload_type: int,
        source_ssrc: int,
        keyframe: bool,
        now: float,
        variants: dict[int, bytearray],
        elements: list[int] | None = None,
    ) -> None:
        """Send one packet of the forwarder's source to this subscriber.

        ``now``: ``time.monotonic()`` of the packet's arrival (one call shared
        by all subscribers). ``variants``: per incoming packet, its copies with
        renumbered header extensions, by ``id()`` of the id table; subscribers
        whose connections negotiated the same ids share one. ``elements``:
        ``data``'s header extension elements as parsed
        (``RtpHeader.extension_elements``), if known: not walked again.
        """
        if not self.active:
            return
        delta = (sequence_number - self._last_in_seq) & 0xFFFF
        if (
            source_ssrc != self._source_ssrc
            or self.waiting_keyframe
            or _SEQUENCE_JUMP < delta < 0x10000 - _SEQUENCE_JUMP
            or -0x7FFFFFFF < (timestamp - self._last_in_ts) < -self._clock_rate
        ):
            if not self._resync(
                data, sequence_number, timestamp, source_ssrc, keyframe, now
            ):
                self.stats.dropped += 1
                return
            delta = 0

        out_pt = self._pt_map.get(payload_type)
        if out_pt is None:
            self.stats.dropped += 1
            return
        out_seq = (sequence_number + self._seq_offset) & 0xFFFF
        if self._rebased_at is not None and self._before_rebase(out_seq):
            # a late packet of the new source from before the switch (a
            # retransmission, reordering): its number was the old source's
            self.stats.dropped += 1
            self.stats.dropped_before_switch += 1
            return
        out_ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        table = self._extension_table
        if table is not None or self._abs_send_time_id:
            # one copy per numbering (id(None): the publisher's own), shared
            # by the subscribers that use it
            variant = variants.get(id(table))
            if variant is None:
                variant = variants[id(table)] = bytearray(data)
                rewrite_extensions(
                    variant, table, self._abs_send_time_id, now, elements
                )
            data = variant  # type: ignore[assignment]
        vp8 = self._vp8
        if vp8 is not None:
            if vp8.renumbers:
                data = bytearray(data)  # type: ignore[assignment]
                vp8.rewrite(data, payload_offset(data))  # type: ignore[arg-type]
            else:
                vp8.note(memoryview(data)[payload_offset(data) :])
        if not self._output.send_rewritten(data, out_pt, out_seq, out_ts, self.ssrc):
            self.stats.dropped += 1
            if len(data) > self._output.max_rtp_size:
                self._too_large(len(data))
            return
        stats = self.stats
        stats.packets_sent += 1
        stats.bytes_sent += len(data)
        if stats.packets_sent == 1:  # media flows to this subscriber
            self.forwarder.first_forwarded(self)
        if delta < 0x8000:
            self._last_in_seq = sequence_number
            self._last_in_ts = timestamp
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._last_out_ts = out_ts
            self._last_sent_at = now

    def _too_large(self, size: int) -> None:
        self.stats.dropped_too_large += 1
        self.forwarder.warn_too_large(size, self._output.max_rtp_size)

    def _resync(
        self,
        data: bytes,
        sequence_number: int,
        timestamp: int,
        source_ssrc: int,
        keyframe: bool,
        now: float,
    ) -> bool:
        """The slow path: a new source, a jump, or waiting for a keyframe.
        Returns whether the packet may be sent (after a re-base).

        ``keyframe`` is the forwarder's verdict, made only while some
        subscriber waits for one; a new source usually starts with a keyframe,
        so it is checked here rather than asking the publisher for another."""
        if source_ssrc != self._source_ssrc or self._jumped(sequence_number):
            if self.kind == "video" and not (
                keyframe or self.forwarder.is_keyframe(data)
            ):
                if not self.waiting_keyframe:
                    self.waiting_keyframe = True
                    self.forwarder.request_keyframe()
                return False
        elif self.waiting_keyframe and not keyframe:
            return False
        # a new source, a keyframe we waited for, or the source's clock went
        # back (e.g. a replaced track restarts at 0)
        self._rebase(source_ssrc, sequence_number, timestamp, now)
        if self._vp8 is None and self.forwarder.simulcast:
            codec = self.forwarder.primary_codec
            if codec is not None and codec.name == "vp8":
                self._vp8 = Vp8Renumbering()
        if self._vp8 is not None:
            self._vp8.rebase(memoryview(data)[payload_offset(data) :])
        return True

    def _before_rebase(self, out_seq: int) -> bool:
        """Whether ``out_seq`` was numbered before the last change of source
        (only judged while that change is recent: numbers wrap)."""
        rebased_at = self._rebased_at
        assert rebased_at is not None
        if (self._next_seq - rebased_at) & 0xFFFF >= 0x4000:
            self._rebased_at = None  # long ago: stop checking
            return False
        return (out_seq - rebased_at) & 0xFFFF >= 0x8000

    def _jumped(self, sequence_number: int) -> bool:
        delta = (sequence_number - self._last_in_seq) & 0xFFFF
        return _SEQUENCE_JUMP < delta < 0x10000 - _SEQUENCE_JUMP

    def _rebase(
        self, source_ssrc: int, sequence_number: int, timestamp: int, now: float
    ) -> None:
        """Map this packet to the next output sequence number and a timestamp
        that advanced by the time since the last packet sent (until ``now``)."""
        self.waiting_keyframe = False
        self._source_ssrc = source_ssrc
        self._seq_offset = (self._next_seq - sequence_number) & 0xFFFF
        self._rebased_at = self._next_seq
        if self._last_sent_at is None:
            out_ts = self._last_out_ts
        else:
            elapsed = max(now - self._last_sent_at, 0.001)
            out_ts = self._last_out_ts + int(elapsed * self._clock_rate)
        self._ts_offset = (out_ts - timestamp) & 0xFFFFFFFF
        self._last_in_seq = sequence_number
        self._last_in_ts = timestamp

    # ------------------------------------------------------------------
    # feedback from the subscriber

    async def on_rtcp(self, packet: Any, now: float) -> None:
        """Handle RTCP feedback the subscriber sent about this stream,
        received at ``now``."""
        if isinstance(packet, (rtc.RtcpRrPacket, rtc.RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self._on_report(report, now)
        elif (
            isinstance(packet, rtc.RtcpRtpfbPacket)
            and packet.fmt == rtc.RTCP_RTPFB_NACK
        ):
            self.stats.nacks_received += 1
            self._retransmits.update_send_rate(self.stats.bytes_sent, now)
            for lost in packet.lost:
                self._retransmit(lost, now)
        elif isinstance(packet, rtc.RtcpPsfbPacket) and packet.fmt in (
            rtc.RTCP_PSFB_PLI,
            rtc.RTCP_PSFB_FIR,
        ):
            # throttled and coalesced for all subscribers by the forwarder
            self.stats.keyframe_requests_received += 1
            self.forwarder.request_keyframe()
        elif isinstance(packet, rtc.RtcpPsfbPacket) and packet.fmt == rtc.RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = rtc.unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self.ssrc in ssrcs:
                self.on_estimate(bitrate, now)

    def on_estimate(self, bitrate: int, now: float) -> None:
        """The subscriber's receiver estimates ``bitrate`` (bit/s) for its
        downlink (REMB); the forwarder's REMB policy may pass it on."""
        self.stats.remb_bitrate = bitrate
        self.estimate = SubscriberEstimate(bitrate, now)
        self.forwarder.on_subscriber_estimate(now)

    # ------------------------------------------------------------------
    # simulcast

    def select_layer(
        self,
        layer_bitrates: Sequence[int | None],
        now: float,
        layer_fps: Sequence[float | None] = (),
    ) -> None:
        """Re-pick this subscriber's layer from its latest estimate and the
        layers' bitrates and frame rates; ask the publisher for a keyframe
        of a new target (repeated while it has not come, at most once a
        second)."""
        if self.kind != "video" or self.closed:
            return
        estimate = self.estimate
        bitrate = (
            estimate.bitrate
            if estimate is not None
            and now - estimate.received_at < self.forwarder.config.remb_stale_after
            else None
        )
        layers = self.layers
        changed = layers.choose(bitrate, layer_bitrates, now, layer_fps)
        target = layers.target
        if target is None or target == layers.current:
            self._layer_requested_at = None
            return
        requested = self._layer_requested_at
        if changed or requested is None or now - requested >= 1.0:
            self._layer_requested_at = now
            self.forwarder.request_layer_keyframe(target)

    def limit_layer(self, max_layer: int, now: float) -> None:
        """The subscriber wants no layer above ``max_layer`` (0: lowest),
        from ``now`` on."""
        self.layers.limit(max_layer)
        now_ms = int(now * 1000)
        forwarder = self.forwarder
        self.select_layer(
            forwarder.layer_bitrates(now_ms), now, forwarder.layer_fps(now_ms)
        )

    def layer_switched(self, rid: str | None) -> None:
        """The forwarder switched this subscriber to layer ``rid``."""
        self.stats.layer = rid
        self.stats.layer_switches += 1

    def _refuse(self, reason: str) -> None:
        refused = self.stats.retransmissions_refused
        if reason not in refused:
            logger.info("%s: not retransmitting a NACKed packet: %s", str(self), reason)
        refused[reason] = refused.get(reason, 0) + 1

    def _on_report(self, report: Any, now: float) -> None:
        stats = self.stats
        stats.fraction_lost = report.fraction_lost / 256
        stats.packets_lost = report.packets_lost
        stats.jitter = report.jitter
        if report.lsr and report.lsr == self._lsr:
            rtt = now - self._lsr_time - report.dlsr / 65536
            if rtt >= 0:
                stats.round_trip_time = rtt

    def _retransmit(self, out_seq: int, now: float) -> None:
        """Answer a NACK from the forwarder's history (same SSRC and sequence),
        at most once per round trip and within the subscriber's budget."""
        if self._source_ssrc is None:
            self._refuse(retransmit.NO_SOURCE)
            return
        if self._rebased_at is not None and self._before_rebase(out_seq):
            self._refuse(PREVIOUS_SOURCE)
            return
        in_seq = (out_seq - self._seq_offset) & 0xFFFF
        data = self.forwarder.history_packet(self._source_ssrc, in_seq)
        if data is None:
            self._refuse(retransmit.NOT_IN_HISTORY)
            return
        out_pt = self._pt_map.get(data[1] & 0x7F)
        if out_pt is None:
            self._refuse(retransmit.UNKNOWN_PAYLOAD_TYPE)
            return
        refusal = self._retransmits.check(
            out_seq, len(data), now, self.stats.round_trip_time
        )
        if refusal == retransmit.OVER_BUDGET:
            if not self._pace(out_seq, len(data), now):
                self._refuse(retransmit.QUEUE_FULL)
            return
        if refusal is not None:
            self._refuse(refusal)
            return
        timestamp = int.from_bytes(data[4:8], "big")
        if self._extension_table is not None or self._abs_send_time_id:
            copy = bytearray(data)
            rewrite_extensions(copy, self._extension_table, self._abs_send_time_id, now)
            data = copy  # type: ignore[assignment]
        if self._output.send_rewritten(
            data, out_pt, out_seq, (timestamp + self._ts_offset) & 0xFFFFFFFF, self.ssrc
        ):
            self.stats.retransmitted += 1

    def _pace(self, out_seq: int, size: int, now: float) -> bool:
        """Hold a retransmission until the budget allows it; False if full."""
        if out_seq not in self._paced:
            if len(self._paced) >= self._retransmits.policy.max_paced:
                return False
            self._paced[out_seq] = None
            self.stats.retransmissions_paced += 1
        if self._pacing is None:
            delay = max(self._retransmits.wait(size, now), 0.005)
            self._pacing = self.forwarder.call_at(now + delay, self._send_paced)
        return True

    def _send_paced(self) -> None:
        self._pacing = None
        held, self._paced = list(self._paced), {}
        if self.closed:
            return
        now = self.forwarder.clock()  # a timer: the scheduler's own input
        for out_seq in held:  # what is over budget again is held again
            try:
                self._retransmit(out_seq, now)
            except Exception:  # a timer callback must not raise into the loop
                self.stats.errors += 1
                logger.debug("paced retransmission to %s failed", self, exc_info=True)

    # ------------------------------------------------------------------
    # reports to the subscriber

    def sender_report(self, cname: str | None, now: float) -> bytes | None:
        """An SR (+SDES) for ``now``, mapping this stream's timestamps to the
        publisher's clock.

        Derived from the publisher's own sender report so that audio and video
        of one publisher stay in sync at the subscriber. ``None`` until both
        a packet was sent and the publisher reported.
        """
        report = self.forwarder.sender_report_for(self._source_ssrc)
        if not self.stats.packets_sent or report is None:
            return None
        elapsed = now - report.received_at
        ntp = (report.ntp_timestamp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF
        rtp_ts = (
            report.rtp_timestamp + int(elapsed * self._clock_rate) + self._ts_offset
        ) & 0xFFFFFFFF
        packets: list[Any] = [
            rtc.RtcpSrPacket(
                ssrc=self.ssrc,
                sender_info=rtc.RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=self.stats.packets_sent & 0xFFFFFFFF,
                    octet_count=self.stats.bytes_sent & 0xFFFFFFFF,
                ),
            )
        ]
        self._lsr = (ntp >> 16) & 0xFFFFFFFF
        self._lsr_time = now
        if cname:
            packets.append(
                rtc.RtcpSdesPacket(
                    chunks=[
                        rtc.RtcpSourceInfo(
                            ssrc=self.ssrc, items=[(1, cname.encode("utf8"))]
                        )
                    ]
                )
            )
        return b"".join(bytes(p) for p in packets)

    def source_closed(self) -> None:
        """The forwarder closed (called by :meth:`Forwarder.close`).

        The owner's :attr:`on_source_closed` removes the subscription (and
        renegotiates, or feeds the slot another track); this copy is closed
        in any case.
        """
        callback, self.on_source_closed = self.on_source_closed, None
        if callback is not None:
            callback(self)
        self.close()

    def close(self, *, bye: bool = True) -> None:
        """Detach from the forwarder and tell the subscriber the stream ended (BYE).

        ``bye=False`` when another source continues on the same SSRC: a BYE
        would make the receiver end the track for good.
        """
        if self.closed:
            return
        self.closed = True
        self.active = False
        if self._pacing is not None:
            self._pacing.cancel()
            self._pacing = None
        self.forwarder.remove_downtrack(self)
        if bye:
            self._output.send_rtcp(bytes(rtc.RtcpByePacket(sources=[self.ssrc])))

    def __repr__(self) -> str:
        return (
            f"<DownTrack {self.kind} {self.forwarder.publisher_id}"
            f" -> {self.subscriber_id} ssrc={self.ssrc}>"
        )
