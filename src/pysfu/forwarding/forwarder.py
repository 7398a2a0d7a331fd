"""One published track fanned out to its subscribers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import _aiortc as rtc
from .._aiortc.bitrate import WindowedRate
from .._aiortc.timers import monotonic_call_at
from ..config import ForwardingConfig
from ..rtp.extensions import find_extension, header_extension
from ..rtp.header import payload_offset
from ..rtp.keyframes import KEYFRAME_DETECTORS
from ..rtp.twcc import TRANSPORT_CC_URI
from .codecs import CodecInfo
from .congestion import simulcast_target
from .framerate import FrameRate
from .history import PacketHistory
from .keyframes import KeyframeRequester
from .ports import CallAt, Clock, RtcpOutput, SenderReport, Subscriber
from .simulcast import DEFAULT_RIDS, layer_of_rid

__all__ = [
    "ABS_SEND_TIME_URI",
    "NACK_MAX_TRIES",
    "NACK_REPEAT_INTERVAL",
    "REMB_HYSTERESIS",
    "REMB_REPEAT_INTERVAL",
    "REMB_START_INTERVAL",
    "REPAIRED_RID_URI",
    "RID_URI",
    "TRANSPORT_CC_PROBATION",
    "CodecInfo",
    "Forwarder",
    "ForwarderStats",
    "PacketRecorder",
    "ReceivedLayer",
    "RtcpOutput",
    "RtpHeaderLike",
    "SenderReport",
]

logger = logging.getLogger(__name__)

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

#: A packet missing from the publisher's stream is NACKed again at most this
#: often (s) and at most this many times in all. aiortc's generator reports
#: every packet still missing whenever a new one goes missing: passing that on
#: made a publisher on a congested uplink resend the same packets again and
#: again into the queue that lost them.
NACK_REPEAT_INTERVAL = 0.15
NACK_MAX_TRIES = 3

#: A new target within this fraction of the last REMB keeps the last value:
#: every change costs some encoders a reset (aiortc's VP8 encoder restarts,
#: with a keyframe, on any change above 10 %), and estimates wobble by a few
#: per cent from report to report.
REMB_HYSTERESIS = 0.08

#: While the uplink estimator reports over-use, aiortc's estimator returns an
#: estimate for every video packet; a REMB repeating the standing value is
#: sent at most this often (seconds). A changed value goes out at once. (Seen:
#: one REMB per forwarded video packet, ~3x the CPU per packet in-process.)
REMB_REPEAT_INTERVAL = 0.2

#: Before pysfu's uplink estimate exists (its first ~3 s of video), the
#: policy's start value is sent this often (seconds): Chromium acts on it
#: only in the first 2 s after its first receiver report, whenever that is.
REMB_START_INTERVAL = 0.5

#: A publisher that negotiated transport-wide numbering but whose first this
#: many video packets carry none (aiortc) keeps pysfu's own uplink estimate.
TRANSPORT_CC_PROBATION = 16


class RtpHeaderLike(Protocol):
    """What the forwarder reads of a parsed packet: the tap's
    :class:`pysfu.rtp.header.RtpHeader` or an aiortc ``RtpPacket``."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int


class PacketRecorder(Protocol):
    """Something that keeps a copy of a track's packets, e.g. a
    :class:`pysfu.recording.TrackRecorder`. Its methods must not raise."""

    def record_rtp(self, data: bytes) -> None: ...

    def record_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None: ...


@dataclass
class ForwarderStats:
    """Counters of one published track, as received from the publisher."""

    packets_received: int = 0
    bytes_received: int = 0
    retransmissions_received: int = 0
    unknown_payload_type: int = 0
    unknown_ssrc: int = 0
    #: Padding-only packets (bandwidth probes) on the RTX stream, not forwarded.
    padding_received: int = 0
    nacks_sent: int = 0
    #: Packets those NACKs asked for (a packet asked for twice counts twice).
    nacked_packets: int = 0
    remb_sent: int = 0
    #: The last bitrate (bit/s) sent to the publisher in a REMB.
    remb_bitrate: int | None = None
    #: pysfu's own latest estimate of the publisher's uplink (bit/s).
    uplink_estimate: int | None = None
    #: Whether the publisher numbers its packets transport-wide and so
    #: estimates its uplink itself from pysfu's feedback (then
    #: ``uplink_estimate`` stays ``None``); ``None`` while undecided.
    publisher_estimates: bool | None = None


class ReceivedLayer:
    """One simulcast encoding of a track, as received: its SSRCs (learned
    from the rid extension of its first packets) and its own receive
    statistics, NACK state, sender report and keyframe requests."""

    def __init__(
        self,
        rid: str,
        index: int,
        send_pli: Callable[[int], bool],
        min_interval: float,
        clock: Clock = time.monotonic,
        call_at: CallAt = monotonic_call_at,
    ) -> None:
        self.rid = rid
        self.index = index
        self.media_ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.receive_stats: rtc.StreamStatistics | None = None
        self.nack = rtc.NackGenerator()
        self.nacked: dict[int, tuple[float, int]] = {}
        self.sender_report: SenderReport | None = None
        self.lsr = 0
        self.lsr_time = 0.0
        self.packets_received = 0
        self.bitrate = WindowedRate(2000)
        #: frames a second, over long enough to ride out an encoder's bursts
        self.frames = FrameRate(4000)
        self.keyframes = KeyframeRequester(
            lambda: self.media_ssrc is not None and send_pli(self.media_ssrc),
            min_interval,
            clock,
            call_at,
        )

    def __repr__(self) -> str:
        return f"<ReceivedLayer {self.rid} ssrc={self.media_ssrc}>"


class Forwarder:
    """Takes one published track's RTP packets and hands them to every subscriber.

    The forwarder owns the parts shared by all subscribers: the publisher-side
    receive statistics, the NACK generator and bandwidth estimator toward the
    publisher, a packet history for answering subscribers' NACKs, and the
    keyframe request throttle. Per-subscriber work happens in
    :class:`~pysfu.forwarding.DownTrack`. No decoder and no encoder exist on
    this path: packets stay encoded from publisher to subscriber.

    Time is passed in: every input that needs it carries ``now`` (seconds on
    ``clock``, ``time.monotonic()`` at the edge). ``clock`` and ``call_at``
    serve only the timers (a coalesced keyframe request, a paced
    retransmission); tests give both and need no event loop.
    """

    def __init__(
        self,
        *,
        track_id: str,
        kind: str,
        publisher_id: str,
        upstream: RtcpOutput,
        rtcp_ssrc: int,
        config: ForwardingConfig | None = None,
        clock: Clock = time.monotonic,
        call_at: CallAt = monotonic_call_at,
    ) -> None:
        self.track_id = track_id
        self.clock = clock
        self.call_at = call_at
        self.kind = kind
        self.publisher_id = publisher_id
        self.config = config or ForwardingConfig()
        self.stats = ForwarderStats()
        self.downtracks: list[Subscriber] = []
        self.codecs: dict[int, CodecInfo] = {}
        # payload type -> the type it retransmits (RTX) or None: read per packet
        self._rtx_for: dict[int, int | None] = {}
        self.header_extensions: dict[str, int] = {}
        self.media_ssrc: int | None = None
        self._keyframe_wanted = False
        self.announced_ssrcs: frozenset[int] = frozenset()
        self.sender_report: SenderReport | None = None
        #: Called with the raw bytes of every media packet (not RTX) received,
        #: e.g. by the room's active-speaker detection; must not raise.
        self.packet_observer: Callable[[bytes], None] | None = None
        #: Recorders of this track: they get every media packet, retransmissions
        #: unwrapped, and every sender report.
        self.recorders: list[PacketRecorder] = []
        self.closed = False
        self._warned_too_large = False
        self._upstream = upstream
        self._rtcp_ssrc = rtcp_ssrc
        self._detect_keyframe = (
            None if kind == "audio" else KEYFRAME_DETECTORS.get("vp8")
        )
        self._history = (
            PacketHistory(self.config.nack_history) if kind == "video" else None
        )
        self._nack = rtc.NackGenerator() if kind == "video" else None
        self._nacked: dict[int, tuple[float, int]] = {}  # seq -> last asked, tries
        self._estimator = rtc.remote_bitrate_estimator() if kind == "video" else None
        self._receive_stats: rtc.StreamStatistics | None = None
        self._lsr = 0
        self._lsr_time = 0.0
        self._abs_send_time_id = 0
        self._transport_cc_id = 0
        self._unnumbered_packets = 0
        self._remb_sent_at: float | None = None
        self.keyframes = KeyframeRequester(
            self._send_pli, self.config.keyframe_min_interval, clock, call_at
        )
        #: Simulcast: the rids offered, lowest first, and the layers learned.
        self.rids: tuple[str, ...] = DEFAULT_RIDS
        self.layers: dict[str, ReceivedLayer] = {}
        self._layer_of_ssrc: dict[int, ReceivedLayer] = {}
        self._rid_id = 0
        self._repaired_rid_id = 0
        self._next_selection = 0.0
        #: Called with (downtrack, old layer, new layer) when a subscriber's
        #: layer changes (``None``: paused); must not raise.
        self.on_layer_changed: (
            Callable[[Subscriber, int | None, int | None], None] | None
        ) = None
        #: Called once, with this forwarder, when the publisher's first RTP
        #: packet arrives (decrypted); must not raise.
        self.on_first_media: Callable[[Forwarder], None] | None = None
        #: Called once per subscriber, with its downtrack, when it sends the
        #: subscriber its first packet; must not raise.
        self.on_first_forward: Callable[[Subscriber], None] | None = None

    # ------------------------------------------------------------------
    # configuration

    def set_codecs(
        self,
        codecs: list[CodecInfo],
        header_extensions: Mapping[str, int],
        ssrcs: Collection[int] = (),
    ) -> None:
        """Record what the publisher negotiated (payload types, extension ids).

        ``ssrcs``: the SSRCs its SDP announced for this track; when given,
        packets of any other SSRC are dropped (counted as unknown_ssrc)
        rather than taken for a new source.
        """
        self.codecs = {c.payload_type: c for c in codecs}
        self._rtx_for = {c.payload_type: c.rtx_for for c in codecs}
        self.announced_ssrcs = frozenset(ssrcs)
        self.header_extensions = dict(header_extensions)
        self._abs_send_time_id = self.header_extensions.get(ABS_SEND_TIME_URI, 0)
        self._transport_cc_id = self.header_extensions.get(TRANSPORT_CC_URI, 0)
        if self.kind == "video":
            self._rid_id = self.header_extensions.get(RID_URI, 0)
            self._repaired_rid_id = self.header_extensions.get(REPAIRED_RID_URI, 0)
        media = [c for c in codecs if c.rtx_for is None]
        if media and self.kind == "video":
            self._detect_keyframe = KEYFRAME_DETECTORS.get(media[0].name)

    @property
    def abs_send_time_id(self) -> int:
        """The publisher's id of the abs-send-time extension (0: none)."""
        return self._abs_send_time_id

    @property
    def primary_codec(self) -> CodecInfo | None:
        """The first non-RTX codec negotiated with the publisher."""
        return next((c for c in self.codecs.values() if c.rtx_for is None), None)

    def warn_too_large(self, size: int, limit: int) -> None:
        """A subscriber could not be sent a packet this large: say so, once
        per track (each such packet is counted in the subscriber's stats)."""
        if self._warned_too_large:
            return
        self._warned_too_large = True
        logger.warning(
            "%s: a %d-byte RTP packet cannot be forwarded (a UDP datagram "
            "carries at most %d once encrypted); such packets are dropped",
            self.track_id,
            size,
            limit,
        )

    def add_downtrack(self, downtrack: Subscriber) -> None:
        self.downtracks.append(downtrack)

    def remove_downtrack(self, downtrack: Subscriber) -> None:
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)

    def add_recorder(self, recorder: PacketRecorder) -> None:
        """Give ``recorder`` a copy of every packet from now on."""
        self.recorders.append(recorder)

    def first_forwarded(self, downtrack: Subscriber) -> None:
        """``downtrack`` sent its first packet: tell :attr:`on_first_forward`."""
        if self.on_first_forward is not None:
            self.on_first_forward(downtrack)

    def remove_recorder(self, recorder: PacketRecorder) -> None:
        if recorder in self.recorders:
            self.recorders.remove(recorder)

    # ------------------------------------------------------------------
    # the hot path

    def on_rtp(
        self, packet: RtpHeaderLike, data: bytes, arrival_time_ms: int, now: float
    ) -> None:
        """Handle one decrypted RTP packet from the publisher (synchronous).

        ``packet`` is its parsed header, ``data`` the whole packet as received,
        ``arrival_time_ms`` aiortc's arrival time (the REMB estimator's clock)
        and ``now`` the forwarder's clock when it arrived.
        """
        stats = self.stats
        stats.packets_received += 1
        stats.bytes_received += len(data)
        if stats.packets_received == 1 and self.on_first_media is not None:
            self.on_first_media(self)
        payload_type = packet.payload_type
        apt = self._rtx_for.get(payload_type, -1)
        if apt == -1:
            stats.unknown_payload_type += 1
            return
        sequence_number = packet.sequence_number
        ssrc = packet.ssrc
        if self._rid_id:
            layer = self._layer_of_ssrc.get(ssrc)
            if layer is None:
                layer = self._learn_layer(packet, data, apt is not None, now)
            if layer is not None:
                self._on_layer_rtp(layer, packet, data, apt, arrival_time_ms, now)
                return
        if self.announced_ssrcs and ssrc not in self.announced_ssrcs:
            stats.unknown_ssrc += 1
            return
        # the parsed header's extension elements (the tap's RtpHeader; not
        # an aiortc RtpPacket), so that subscribers' copies skip a walk
        elements: list[int] | None = getattr(packet, "extension_elements", None)
        if apt is not None:
            elements = None  # data is replaced by the unwrapped packet
            if self.media_ssrc is None:
                return
            unwrapped = self._unwrap_rtx(data, apt, self.media_ssrc)
            if unwrapped is None:
                return
            data, sequence_number = unwrapped
            payload_type = apt
            ssrc = self.media_ssrc
            stats.retransmissions_received += 1
            if self._nack is not None:
                self._nack.missing.discard(sequence_number)
        else:
            self._observe_media(packet, data, ssrc, arrival_time_ms, now)
            if self.packet_observer is not None:
                self.packet_observer(data)

        if self._history is not None:
            self._history.put(ssrc, sequence_number, data)
        if self.recorders:
            for recorder in self.recorders:
                recorder.record_rtp(data)

        keyframe = False
        if self._detect_keyframe is not None:
            for waiting in self.downtracks:  # a plain loop: no generator per packet
                if waiting.waiting_keyframe:
                    keyframe = self.is_keyframe(data)
                    break

        timestamp = packet.timestamp
        variants: dict[int, bytearray] = {}
        for downtrack in self.downtracks:
            try:
                downtrack.forward(
                    data,
                    sequence_number,
                    timestamp,
                    payload_type,
                    ssrc,
                    keyframe,
                    now,
                    variants,
                    elements,
                )
            except Exception:  # one subscriber must never break the others
                downtrack.stats.errors += 1
                logger.debug("forwarding to %s failed", downtrack, exc_info=True)

    def _observe_media(
        self,
        packet: RtpHeaderLike,
        data: bytes,
        ssrc: int,
        arrival_time_ms: int,
        now: float,
    ) -> None:
        if ssrc != self.media_ssrc:
            self.media_ssrc = ssrc
            if self._keyframe_wanted:
                self._keyframe_wanted = False
                self.keyframes.request()
            clock_rate = self.codecs[packet.payload_type].clock_rate
            self._receive_stats = rtc.StreamStatistics(clock_rate)
            if self._nack is not None:
                self._nack = rtc.NackGenerator()
                self._nacked.clear()
        assert self._receive_stats is not None
        # aiortc's statistics and NACK generator read only sequence_number
        # and timestamp, which every RtpHeaderLike has
        self._receive_stats.add(packet)  # type: ignore[arg-type]
        if self._nack is not None and self._nack.add(packet):
            lost = self._due_nacks(self._nack.missing, now, self._nacked)
            self._send_nack(lost, self.media_ssrc)
        self._estimate_uplink(packet, data, arrival_time_ms, now)

    def _publisher_estimates(self, packet: RtpHeaderLike, data: bytes) -> bool:
        """Whether the publisher estimates its own uplink (transport-wide
        feedback, :class:`pysfu.rtp.twcc.TransportFeedback`), decided by its
        first packets."""
        decided = self.stats.publisher_estimates
        if decided is not None:
            return decided
        if not self._transport_cc_id:
            self.stats.publisher_estimates = False
        elif find_extension(data, packet, self._transport_cc_id) >= 0:
            self.stats.publisher_estimates = True
        else:
            self._unnumbered_packets += 1
            if self._unnumbered_packets >= TRANSPORT_CC_PROBATION:
                self.stats.publisher_estimates = False
        return bool(self.stats.publisher_estimates)

    def _estimate_uplink(
        self, packet: RtpHeaderLike, data: bytes, arrival_time_ms: int, now: float
    ) -> None:
        if self._estimator is None:
            return  # audio: REMB speaks for video
        if self._publisher_estimates(packet, data):
            # Its own controller (delay, loss and probes) holds it to its
            # uplink, measured from send times it kept and the kernel's
            # arrival times pysfu reports: immune to this server's load. The
            # REMB keeps standing for the cap and the subscribers.
            sent_at = self._remb_sent_at
            if sent_at is None or now - sent_at >= REMB_START_INTERVAL:
                self._send_remb(now, REMB_START_INTERVAL)
            return
        ast_id = self._abs_send_time_id
        if ast_id:
            at = find_extension(data, packet, ast_id)
            if 0 < at <= len(data) - 3:
                remb = self._estimator.add(
                    abs_send_time=(data[at] << 16) | (data[at + 1] << 8) | data[at + 2],
                    arrival_time_ms=arrival_time_ms,
                    payload_size=len(data) - payload_offset(data),
                    ssrc=packet.ssrc,
                )
                if remb is not None:
                    self.stats.uplink_estimate = remb[0]
                    self._send_remb(now, REMB_REPEAT_INTERVAL)
                elif self.stats.uplink_estimate is None and (
                    self._remb_sent_at is None
                    or now - self._remb_sent_at >= REMB_START_INTERVAL
                ):
                    # not measured yet: the policy's start value (see
                    # SlowestSubscriber.start_at_cap), while the
                    # publisher's controller still takes it as its target
                    self._send_remb(now, REMB_START_INTERVAL)

    # ------------------------------------------------------------------
    # simulcast

    @property
    def simulcast(self) -> bool:
        """Whether the publisher sends several layers (some learned by rid)."""
        return bool(self.layers)

    def _learn_layer(
        self, packet: RtpHeaderLike, data: bytes, is_rtx: bool, now: float
    ) -> ReceivedLayer | None:
        """An SSRC not seen yet: its rid (or, for RTX, repaired rid) names
        its layer. Chrome tags only the first packets of each SSRC."""
        ext_id = self._repaired_rid_id if is_rtx else self._rid_id
        if not ext_id:
            return None
        value = header_extension(data, ext_id)
        if value is None:
            return None
        rid = value.decode("ascii", "replace")
        index = layer_of_rid(rid, self.rids)
        if index is None:
            logger.info("%s: ignoring a layer with unknown rid %r", self.track_id, rid)
            return None
        layer = self.layers.get(rid)
        if not self.layers:
            # let every layer show up and be measured before the first
            # selection: until then subscribers aim at the top layer
            self._next_selection = now + 1.0
        if layer is None:
            layer = self.layers[rid] = ReceivedLayer(
                rid,
                index,
                self._send_layer_pli,
                self.config.keyframe_min_interval,
                self.clock,
                self.call_at,
            )
        if is_rtx:
            layer.rtx_ssrc = packet.ssrc
        else:
            if layer.media_ssrc is not None:  # the encoder restarted
                self._layer_of_ssrc.pop(layer.media_ssrc, None)
            layer.media_ssrc = packet.ssrc
            layer.receive_stats = rtc.StreamStatistics(
                self.codecs[packet.payload_type].clock_rate
            )
            layer.nack = rtc.NackGenerator()
            layer.nacked.clear()
            layer.frames.reset()
        self._layer_of_ssrc[packet.ssrc] = layer
        return layer

    def _on_layer_rtp(
        self,
        layer: ReceivedLayer,
        packet: RtpHeaderLike,
        data: bytes,
        apt: int | None,
        arrival_time_ms: int,
        now: float,
    ) -> None:
        sequence_number = packet.sequence_number
        ssrc = layer.media_ssrc
        if ssrc is None:
            return  # RTX of a layer whose media was not seen yet
        if apt is not None:
            unwrapped = self._unwrap_rtx(data, apt, ssrc)
            if unwrapped is None:
                return
            data, sequence_number = unwrapped
            self.stats.retransmissions_received += 1
            layer.nack.missing.discard(sequence_number)
            payload_type = apt
        else:
            payload_type = packet.payload_type
            self._observe_layer(layer, packet, data, arrival_time_ms, now)
            # the layer's rates on the clock select_layers() reads
            now_ms = int(now * 1000)
            layer.bitrate.add(len(data), now_ms)
            layer.frames.add(packet.timestamp, now_ms)
        if self._history is not None:
            self._history.put(ssrc, sequence_number, data)
        if self.recorders and layer.index == max(
            other.index for other in self.layers.values()
        ):
            for recorder in self.recorders:
                recorder.record_rtp(data)

        if now >= self._next_selection:
            self._next_selection = now + 0.5
            self.select_layers(now)
        verdict: list[bool] = []

        def is_keyframe() -> bool:  # at most once per packet, only if asked
            if not verdict:
                verdict.append(self.is_keyframe(data))
            return verdict[0]

        timestamp = packet.timestamp
        variants: dict[int, bytearray] = {}
        for downtrack in self.downtracks:
            selector = downtrack.layers
            before = selector.current
            if not selector.admit(layer.index, is_keyframe, bool(data[1] & 0x80)):
                if before != selector.current:
                    self._layer_changed(downtrack, before)
                continue
            if before != selector.current:
                self._layer_changed(downtrack, before)
            try:
                downtrack.forward(
                    data,
                    sequence_number,
                    timestamp,
                    payload_type,
                    ssrc,
                    downtrack.waiting_keyframe and is_keyframe(),
                    now,
                    variants,
                )
            except Exception:  # one subscriber must never break the others
                downtrack.stats.errors += 1
                logger.debug("forwarding to %s failed", downtrack, exc_info=True)

    def _observe_layer(
        self,
        layer: ReceivedLayer,
        packet: RtpHeaderLike,
        data: bytes,
        arrival_time_ms: int,
        now: float,
    ) -> None:
        layer.packets_received += 1
        assert layer.receive_stats is not None
        layer.receive_stats.add(packet)  # type: ignore[arg-type]
        if layer.nack.add(packet):
            lost = self._due_nacks(layer.nack.missing, now, layer.nacked)
            self._send_nack(lost, layer.media_ssrc)
        self._estimate_uplink(packet, data, arrival_time_ms, now)

    def _layer_changed(self, downtrack: Subscriber, before: int | None) -> None:
        after = downtrack.layers.current
        downtrack.layer_switched(None if after is None else self.rids[after])
        if self.on_layer_changed is not None:
            self.on_layer_changed(downtrack, before, after)

    def layer_bitrates(self, now_ms: int) -> list[int | None]:
        """Each offered layer's received bitrate (bit/s, index 0 lowest);
        ``None`` for a layer not being received (the publisher may stop its
        top layers when its uplink is short)."""
        rates: list[int | None] = [None] * len(self.rids)
        for layer in self.layers.values():
            rates[layer.index] = layer.bitrate.rate(now_ms)
        return rates

    def layer_fps(self, now_ms: int) -> list[float | None]:
        """Each offered layer's received frame rate (frames/s over the last
        few seconds, index 0 lowest); ``None`` while not known."""
        rates: list[float | None] = [None] * len(self.rids)
        for layer in self.layers.values():
            rates[layer.index] = layer.frames.rate(now_ms)
        return rates

    def select_layers(self, now: float) -> None:
        """Re-pick every subscriber's target layer; ask for a keyframe of
        each new target."""
        now_ms = int(now * 1000)
        rates, fps = self.layer_bitrates(now_ms), self.layer_fps(now_ms)
        for downtrack in self.downtracks:
            downtrack.select_layer(rates, now, fps)

    def request_layer_keyframe(self, index: int) -> None:
        """Ask the publisher for a keyframe of layer ``index``."""
        for layer in self.layers.values():
            if layer.index == index and not self.closed:
                layer.keyframes.request()

    def _send_layer_pli(self, media_ssrc: int) -> bool:
        packet = rtc.RtcpPsfbPacket(
            fmt=rtc.RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc
        )
        return self._upstream.send_rtcp(bytes(packet))

    def sender_report_for(self, ssrc: int | None) -> SenderReport | None:
        """The publisher's latest sender report for source ``ssrc``."""
        layer = self._layer_of_ssrc.get(ssrc) if ssrc is not None else None
        report = layer.sender_report if layer is not None else self.sender_report
        return report if report is not None and report.ssrc == ssrc else None

    def is_keyframe(self, data: bytes) -> bool:
        """Whether RTP packet ``data`` starts a keyframe (video; always False
        for audio or a codec pysfu cannot inspect)."""
        detect = self._detect_keyframe
        if detect is None:
            return False
        # a view, not a copy of the payload
        return detect(memoryview(data)[payload_offset(data) :])

    def _unwrap_rtx(
        self, data: bytes, apt: int, media_ssrc: int
    ) -> tuple[bytes, int] | None:
        """RFC 4588: the original sequence number leads the RTX payload."""
        offset = payload_offset(data)
        end = len(data)
        if data[0] & 0x20:  # P: the last byte counts padding octets
            end -= data[-1]
        if end < offset + 2:
            # a bandwidth probe (Chrome pads on RTX): no original packet,
            # and its zeros would read as sequence number 0
            self.stats.padding_received += 1
            return None
        original_seq = (data[offset] << 8) | data[offset + 1]
        buf = bytearray(data[:offset])
        buf += data[offset + 2 :]
        buf[1] = (buf[1] & 0x80) | apt
        buf[2] = original_seq >> 8
        buf[3] = original_seq & 0xFF
        buf[8:12] = media_ssrc.to_bytes(4, "big")
        return bytes(buf), original_seq

    def history_packet(self, ssrc: int, sequence_number: int) -> bytes | None:
        """A recently received packet, for retransmission to a subscriber."""
        if self._history is None:
            return None
        return self._history.get(ssrc, sequence_number)

    # ------------------------------------------------------------------
    # feedback toward the publisher

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (throttled, see KeyframeRequester)."""
        if self.kind != "video" or self.closed:
            return
        if not self.layers:
            self.keyframes.request()
            return
        # simulcast: only the layers some subscriber gets or waits for
        wanted = set()
        for downtrack in self.downtracks:
            wanted.add(downtrack.layers.current)
            wanted.add(downtrack.layers.target)
        for layer in self.layers.values():
            if layer.index in wanted:
                layer.keyframes.request()

    def _send_pli(self) -> bool:
        if self.media_ssrc is None:
            # nothing received yet: ask as soon as the publisher's SSRC is known
            self._keyframe_wanted = True
            return False
        packet = rtc.RtcpPsfbPacket(
            fmt=rtc.RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=self.media_ssrc
        )
        return self._upstream.send_rtcp(bytes(packet))

    def _due_nacks(
        self,
        missing: Collection[int],
        now: float,
        nacked: dict[int, tuple[float, int]],
    ) -> list[int]:
        """The missing packets to ask for now (see :data:`NACK_REPEAT_INTERVAL`);
        ``nacked``: the source's record of what was asked when."""
        due = []
        for seq in sorted(missing):
            last = nacked.get(seq)
            if last is None:
                nacked[seq] = (now, 1)
                due.append(seq)
            elif now - last[0] >= NACK_REPEAT_INTERVAL and last[1] < NACK_MAX_TRIES:
                nacked[seq] = (now, last[1] + 1)
                due.append(seq)
        if len(nacked) > 2 * len(missing) + 64:  # forget what arrived or expired
            for seq in [seq for seq in nacked if seq not in missing]:
                del nacked[seq]
        return due

    def _send_nack(self, lost: list[int], media_ssrc: int | None) -> None:
        if media_ssrc is None or not lost:
            return
        packet = rtc.RtcpRtpfbPacket(
            fmt=rtc.RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc
        )
        packet.lost = lost
        if self._upstream.send_rtcp(bytes(packet)):
            self.stats.nacks_sent += 1
            self.stats.nacked_packets += len(lost)

    def subscriber_estimates(self, now: float) -> list[int]:
        """The subscribers' REMBs for this track (bit/s), stale ones left out."""
        horizon = now - self.config.remb_stale_after
        return [
            estimate.bitrate
            for downtrack in self.downtracks
            if (estimate := downtrack.estimate) is not None
            and estimate.received_at >= horizon
        ]

    def target_bitrate(self, now: float) -> int | None:
        """What the REMB policy asks of the publisher now (bit/s), if anything."""
        if self.layers:
            # each subscriber picks a layer it can take: neither the slowest
            # one nor pysfu's own (jittery) uplink estimate limits the
            # publisher; see simulcast_target
            return simulcast_target(
                self.stats.uplink_estimate, self.config.max_video_bitrate
            )
        return self.config.remb_policy.combine(
            self.stats.uplink_estimate,
            self.config.max_video_bitrate,
            self.subscriber_estimates(now),
        )

    def on_subscriber_estimate(self, now: float) -> None:
        """A subscriber reported a new REMB: tell the publisher at once if the
        target fell, otherwise at most once a second (a rise can wait for the
        next report; a fall is what stops a queue from filling)."""
        if self.kind != "video":
            return  # REMB speaks for video; a subscriber's may list audio SSRCs
        if self.layers:
            self.select_layers(now)
        target = self.target_bitrate(now)
        last = self.stats.remb_bitrate
        if target is None:
            return
        if (
            last is None
            or target < last * (1 - REMB_HYSTERESIS)
            or (
                target > last * (1 + REMB_HYSTERESIS)
                and now - (self._remb_sent_at or 0.0) >= 1.0
            )
        ):
            self._send_remb(now)

    def on_connected(self, now: float) -> None:
        """The publisher's transport is up (DTLS done): tell it the policy's
        start value before its first video frame, if nothing is measured yet.

        Chromium's encoder picks its first resolution from the bitrate it has
        for its first frames: at its 300 kbit/s start it drops them and
        scales down (720p to 180-360p), and a detailed picture stays small.
        A REMB that only followed the first video packet came after that
        choice. Before any packet the REMB names the SSRCs of the SDP.
        """
        if self.kind != "video" or self.stats.uplink_estimate is not None:
            return
        self._send_remb(now)

    def _send_remb(self, now: float, repeat_after: float = 0.0) -> None:
        """Send the REMB the policy asks for now; with ``repeat_after``, not
        if it would repeat the standing value sent less than that long ago."""
        ssrcs = [
            layer.media_ssrc
            for layer in self.layers.values()
            if layer.media_ssrc is not None
        ]
        if self.media_ssrc is not None:
            ssrcs.append(self.media_ssrc)
        elif not ssrcs:
            ssrcs = sorted(self.announced_ssrcs)  # no packet yet
        if not ssrcs:
            return
        bitrate = self.target_bitrate(now)
        if bitrate is None:
            return
        last = self.stats.remb_bitrate
        if last is not None and abs(bitrate - last) <= last * REMB_HYSTERESIS:
            bitrate = last  # a wobble: repeat the standing value
            sent_at = self._remb_sent_at
            if sent_at is not None and now - sent_at < repeat_after:
                return
        packet = rtc.RtcpPsfbPacket(
            fmt=rtc.RTCP_PSFB_APP,
            ssrc=self._rtcp_ssrc,
            media_ssrc=0,
            fci=rtc.pack_remb_fci(bitrate, ssrcs),
        )
        if self._upstream.send_rtcp(bytes(packet)):
            self.stats.remb_sent += 1
            self.stats.remb_bitrate = bitrate
            self._remb_sent_at = now

    async def on_rtcp(self, packet: Any, now: float) -> None:
        """RTCP from the publisher about this track (sender reports, BYE),
        received at ``now``."""
        if isinstance(packet, rtc.RtcpSrPacket):
            info = packet.sender_info
            report = SenderReport(
                ssrc=packet.ssrc,
                ntp_timestamp=info.ntp_timestamp,
                rtp_timestamp=info.rtp_timestamp,
                received_at=now,
            )
            layer = self._layer_of_ssrc.get(packet.ssrc)
            if layer is not None:
                layer.sender_report = report
                layer.lsr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
                layer.lsr_time = report.received_at
                if layer.index != max(other.index for other in self.layers.values()):
                    return  # recorders keep the top layer
            else:
                self.sender_report = report
                self._lsr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
                self._lsr_time = report.received_at
            for recorder in self.recorders:
                recorder.record_sender_report(info.ntp_timestamp, info.rtp_timestamp)

    def receiver_report(self, now: float) -> rtc.RtcpReceiverInfo | None:
        """Reception statistics for the publisher's next receiver report."""
        return _report_block(
            self.media_ssrc, self._receive_stats, self._lsr, self._lsr_time, now
        )

    def receiver_reports(self, now: float) -> list[rtc.RtcpReceiverInfo]:
        """Report blocks for every source of this track: the single one, or
        each simulcast layer (a layer Chrome gets no report for keeps
        tagging its packets with rid and mid)."""
        blocks = [
            _report_block(
                layer.media_ssrc, layer.receive_stats, layer.lsr, layer.lsr_time, now
            )
            for layer in self.layers.values()
        ]
        blocks.append(self.receiver_report(now))
        return [block for block in blocks if block is not None]

    @property
    def receive_statistics(self) -> rtc.StreamStatistics | None:
        """RFC 3550 reception statistics of the current source, if any."""
        return self._receive_stats

    @property
    def rtcp_ssrc(self) -> int:
        return self._rtcp_ssrc

    def close(self) -> None:
        """Stop forwarding, and tell each downtrack, whose owner detaches it."""
        self.closed = True
        self.packet_observer = None
        self.keyframes.close()
        for downtrack in list(self.downtracks):
            downtrack.source_closed()
        self.downtracks.clear()
        self.recorders.clear()

    def __repr__(self) -> str:
        return f"<Forwarder {self.kind} {self.track_id} of {self.publisher_id}>"


def _report_block(
    ssrc: int | None,
    stream: rtc.StreamStatistics | None,
    lsr: int,
    lsr_time: float,
    now: float,
) -> rtc.RtcpReceiverInfo | None:
    if stream is None or ssrc is None:
        return None
    dlsr = 0
    if lsr:
        delay = now - lsr_time
        if 0 < delay < 65536:
            dlsr = int(delay * 65536)
    return rtc.RtcpReceiverInfo(
        ssrc=ssrc,
        fraction_lost=stream.fraction_lost,
        packets_lost=stream.packets_lost,
        highest_sequence=stream.max_seq or 0,
        jitter=stream.jitter,
        lsr=lsr,
        dlsr=dlsr,
    )
