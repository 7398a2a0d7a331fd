"""What one participant receives: a DownTrack per forwarded track.

:class:`Subscriptions` puts each received track on a transceiver of the
participant's :class:`~pysfu.peer.transport.PeerTransport`, configures its
:class:`~pysfu.forwarding.DownTrack` once the sender is negotiated, and keeps
what outlives one track: idle transceivers to reuse, and where the last
stream of each sender stopped, so that the next one continues it. Which
transceiver a track gets, and when to renegotiate, is the session's choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from .. import _aiortc as rtc
from ..config import SFUConfig
from ..forwarding import CodecInfo, DownTrack, Forwarder
from ..forwarding.downtrack import StreamPosition
from ..forwarding.packet import extension_id_table
from .transport import PeerTransport

__all__ = [
    "SourceClosed",
    "Subscription",
    "Subscriptions",
    "capabilities",
    "capabilities_like",
    "restrict_video_codecs",
]

logger = logging.getLogger(__name__)

#: Told the track id of a subscription whose forwarder closed.
SourceClosed = Callable[[str], None]


@dataclass
class Subscription:
    """One forwarded track this participant receives."""

    forwarder: Forwarder
    downtrack: DownTrack
    transceiver: RTCRtpTransceiver


class Subscriptions:
    """The participant's received tracks, by track id (a mapping)."""

    def __init__(
        self,
        transport: PeerTransport,
        config: SFUConfig,
        subscriber_id: str,
        *,
        retire: Callable[[DownTrack], None],
    ) -> None:
        self._transport = transport
        self._config = config
        self._subscriber_id = subscriber_id
        self._retire = retire
        #: The subscriptions by track id (``Participant.subscriptions``).
        self.by_track: dict[str, Subscription] = {}
        #: What to do when a subscribed track's forwarder closes (set by the
        #: session); without it the subscription is just detached.
        self.on_source_closed: SourceClosed | None = None
        # where the last stream of an idle sender stopped, for the next one
        self._stream_positions: dict[int, StreamPosition] = {}
        self._idle_transceivers: list[RTCRtpTransceiver] = []

    def __contains__(self, track_id: str) -> bool:
        return track_id in self.by_track

    def get(self, track_id: str) -> Subscription | None:
        """The subscription to ``track_id``, if any."""
        return self.by_track.get(track_id)

    def may_forward(self, forwarder: Forwarder) -> bool:
        """Whether the track has room for one more subscriber (the limit)."""
        limit = self._config.limits.max_subscribers_per_track
        if len(forwarder.downtracks) < limit:
            return True
        logger.warning(
            "%s not forwarded to %s: %d subscribers already",
            forwarder.track_id,
            self._subscriber_id,
            limit,
        )
        return False

    def take_transceiver(self, kind: str) -> RTCRtpTransceiver:
        """An idle ``sendonly`` transceiver of ``kind``, or a new one."""
        for transceiver in self._idle_transceivers:
            if transceiver.kind == kind:
                self._idle_transceivers.remove(transceiver)
                transceiver.direction = "sendonly"
                return transceiver
        return self._transport.add_transceiver(kind, "sendonly")

    def release(self, transceiver: RTCRtpTransceiver, *, reuse: bool) -> None:
        """A transceiver's track ended: it goes ``inactive``, and is kept
        for the next track of its kind if ``reuse``."""
        transceiver.direction = "inactive"
        if reuse:
            self._idle_transceivers.append(transceiver)

    def forget_idle_transceivers(self) -> None:
        """Reuse none of the idle transceivers kept so far (they stay
        ``inactive``)."""
        self._idle_transceivers.clear()
        self._stream_positions.clear()

    def attach(
        self,
        forwarder: Forwarder,
        transceiver: RTCRtpTransceiver,
        *,
        on_parameters: Callable[[Any], None] | None = None,
    ) -> Subscription:
        """Send ``forwarder``'s packets on ``transceiver``'s sender.

        The sender's negotiated parameters configure the downtrack, unless
        ``on_parameters`` takes them instead.
        """
        sender = transceiver.sender
        output = self._transport.start()
        if output.on_path_change is None:
            output.on_path_change = self.request_keyframes
        downtrack = DownTrack(
            forwarder,
            output,
            rtc.sender_ssrc_of(sender),
            subscriber_id=self._subscriber_id,
            resume=self._stream_positions.pop(id(sender), None),
        )
        subscription = Subscription(forwarder, downtrack, transceiver)
        hooks = self._transport.sender_hooks(sender)
        hooks.on_parameters = on_parameters or (lambda _p: self.configure(subscription))
        hooks.on_rtcp = downtrack.on_rtcp
        downtrack.on_source_closed = self._source_closed
        forwarder.add_downtrack(downtrack)
        self.by_track[forwarder.track_id] = subscription
        return subscription

    def _source_closed(self, downtrack: DownTrack) -> None:
        track_id = downtrack.forwarder.track_id
        subscription = self.by_track.get(track_id)
        if subscription is None or subscription.downtrack is not downtrack:
            return
        if self.on_source_closed is not None:
            self.on_source_closed(track_id)
        else:
            self.detach(track_id, keep_position=False)

    def detach(
        self, track_id: str, *, keep_position: bool, bye: bool = True
    ) -> Subscription | None:
        """Stop a subscription's packets; remember where its stream stopped.

        Its counters are retired. ``bye=False`` keeps the client's track
        alive for a successor.
        """
        subscription = self.by_track.pop(track_id, None)
        if subscription is None:
            return None
        downtrack = subscription.downtrack
        downtrack.on_source_closed = None
        downtrack.close(bye=bye)
        self._retire(downtrack)
        sender = subscription.transceiver.sender
        self._transport.clear_sender_hooks(sender)
        if keep_position:
            self._stream_positions[id(sender)] = downtrack.position()
        return subscription

    def configure(self, subscription: Subscription) -> None:
        """Map the forwarder's payload types and header extensions to what
        the subscriber's section negotiated."""
        downtrack, transceiver = subscription.downtrack, subscription.transceiver
        forwarder = downtrack.forwarder
        negotiated = [
            CodecInfo.from_aiortc(c) for c in rtc.negotiated_codecs(transceiver)
        ]
        payload_types: dict[int, int] = {}
        clock_rate = 0
        for source in forwarder.codecs.values():
            if source.rtx_for is not None:
                continue
            target = next((c for c in negotiated if source.same_format(c)), None)
            if target is not None:
                payload_types[source.payload_type] = target.payload_type
                clock_rate = target.clock_rate
        if not payload_types:
            logger.warning(
                "%s cannot receive %s: no codec in common",
                self._subscriber_id,
                forwarder.track_id,
            )
            return
        extensions = extension_id_table(
            forwarder.header_extensions,
            {e.uri: e.id for e in rtc.negotiated_header_extensions(transceiver)},
            set(self._config.forwarding.forwarded_extensions),
        )
        downtrack.configure(payload_types, extensions, clock_rate)

    def request_keyframes(self) -> None:
        """Ask the publisher of each received video track for a keyframe
        (throttled per track by its forwarder): the subscriber's path
        changed, what was sent on the old one is lost, and not every client
        asks for a keyframe after an outage (Chromium after an ICE restart
        onto a new address did not, see docs/explanation/forwarding.md)."""
        video = [s for s in self.by_track.values() if s.forwarder.kind == "video"]
        logger.info(
            "%s moved to a new path: asking %d publishers for a keyframe",
            self._subscriber_id,
            len(video),
        )
        for subscription in video:
            subscription.forwarder.request_keyframe()

    def send_reports(self, output: rtc.RtpOutput, now: float) -> None:
        """Write a sender report for each received track (``now``:
        ``time.monotonic()``)."""
        for subscription in self.by_track.values():
            data = subscription.downtrack.sender_report(None, now)
            if data is not None:
                output.send_rtcp(data)

    def close(self) -> None:
        """Close every downtrack (the participant is closing); nothing is
        retired: the participant's own counters include them."""
        for subscription in self.by_track.values():
            subscription.downtrack.on_source_closed = None
            subscription.downtrack.close()
        self.by_track.clear()


def capabilities(kind: str, names: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    """Sender capabilities of ``kind`` with the given codec names, in that order."""
    found = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for name in names for c in found if c.name.lower() == name.lower()]
    return chosen + [c for c in found if c.name.lower() == "rtx"]


def capabilities_like(codec: CodecInfo) -> list[RTCRtpCodecCapability]:
    """Capabilities a subscriber can be offered to receive ``codec`` unchanged."""
    found = RTCRtpSender.getCapabilities(codec.mime_type.split("/")[0]).codecs
    matching = [
        c
        for c in found
        if c.name.lower() == codec.name
        and CodecInfo(0, c.mimeType, c.clockRate, c.channels, c.parameters).same_format(
            codec
        )
    ]
    if not matching:
        raise ValueError(f"no capability matches {codec.mime_type}")
    return matching


def restrict_video_codecs(
    transceiver: RTCRtpTransceiver, video_codecs: tuple[str, ...] | None
) -> None:
    """Let a receiving video transceiver accept only ``video_codecs`` (if any)."""
    if video_codecs:
        transceiver.setCodecPreferences(capabilities("video", video_codecs))
