"""A participant: one peer connection, what it publishes and what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from . import _aiortc as rtc
from ._slots import sleep_slotted
from .answering import Answerer, ClientOffer
from .config import SFUConfig
from .datachannel import CHANNEL_LABEL, DataChannel
from .errors import SignallingError
from .forwarding import CodecInfo, DownTrack, Forwarder
from .forwarding.downtrack import StreamPosition
from .forwarding.simulcast import DEFAULT_RIDS
from .messages import (
    Answer,
    Candidate,
    ClientMessage,
    Error,
    Leave,
    Offer,
    Record,
    ServerMessage,
    VideoQuality,
)
from .negotiation import Negotiator
from .ports import Outbox
from .ratelimit import TokenBucket
from .rtp.extensions import extension_id_table
from .stats import ParticipantStats

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

#: Seconds after connecting by which media must arrive from a client whose
#: answer says it publishes; otherwise it gets the error ``no_media``.
NO_MEDIA_NOTICE_AFTER = 20.0


class Role(str, enum.Enum):
    """A participant's role in its room."""

    HOST = "host"
    PARTICIPANT = "participant"


@dataclass
class Subscription:
    """One forwarded track this participant receives."""

    forwarder: Forwarder
    downtrack: DownTrack
    transceiver: RTCRtpTransceiver


class Participant:
    """A peer in a room, with the server's side of its peer connection.

    The participant owns its ``RTCPeerConnection``, one
    :class:`~pysfu.forwarding.Forwarder` per track it publishes and one
    :class:`~pysfu.forwarding.DownTrack` per track it receives. Closing it
    closes all of them (closing cascades down, as in mediasoup). Create
    participants with :meth:`pysfu.Room.join`, not directly.
    """

    def __init__(
        self,
        room: Room,
        participant_id: str,
        role: Role,
        outbox: Outbox,
        *,
        config: SFUConfig,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        video_codecs: tuple[str, ...] | None = None,
        name: str | None = None,
        offer: ClientOffer | None = None,
    ) -> None:
        self.room = room
        self.id = participant_id
        #: A display name for the other clients (defaults to the id).
        self.name = name or participant_id
        self.role = role
        self.config = config
        #: Tracks this participant publishes, by track id.
        self.publications: dict[str, Forwarder] = {}
        #: Tracks this participant receives, by track id.
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        #: Client messages refused with an error so far.
        self.signalling_errors = 0
        self._rate = TokenBucket(
            config.limits.messages_per_second, config.limits.message_burst
        )
        self._outbox = outbox
        self._ice_username_fragment = ice_username_fragment
        self._ice_password = ice_password
        self._video_codecs = video_codecs
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(
                        urls=s.urls, username=s.username, credential=s.credential
                    )
                    for s in config.ice.servers
                ],
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.negotiator = Negotiator(self.pc, self._send_offer)
        #: The relayed data channel (``SFUConfig.data_channels``), once started.
        self.data: DataChannel | None = None
        self._tap: rtc.RtpTap | None = None
        self._output: rtc.RtpOutput | None = None
        self._sender_hooks: dict[int, rtc.SenderHooks] = {}
        # where the last stream of an idle sender stopped, for the next one
        self._stream_positions: dict[int, StreamPosition] = {}
        self._idle_transceivers: list[RTCRtpTransceiver] = []
        # the sections the client may publish on (None: not made yet)
        self._publish_slots: list[RTCRtpTransceiver] | None = None
        #: video publish slots offered to receive simulcast (rids q, h, f)
        self._simulcast_slots: list[RTCRtpTransceiver] = []
        self._warned_declined = False
        self._media_watch: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._watch_media_once_connected)
        self._rtcp_task: asyncio.Task[None] | None = None
        self._leave_task: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()
        #: Set for a session fixed by the client's offer (WHIP/WHEP): it
        #: answers once and never renegotiates (see :mod:`pysfu.answering`).
        self.answerer = Answerer(self, offer) if offer is not None else None

    @property
    def video_codecs(self) -> tuple[str, ...] | None:
        """The video codecs this participant may publish (the room's), or all."""
        return self._video_codecs

    # ------------------------------------------------------------------
    # lifecycle

    async def start(self) -> None:
        """Offer the client its publish slots and what it already receives.

        A participant created with a client's offer answers it instead
        (:meth:`~pysfu.answering.Answerer.start`; the answer
        is then in ``answerer.answer``).
        """
        self._rtcp_task = asyncio.get_running_loop().create_task(self._run_rtcp())
        if self.answerer is not None:
            await self.answerer.start()
            return
        self._add_publish_slots()
        if self.config.data_channels:
            # after the transceivers: it shares their DTLS transport (bundle)
            self.data = DataChannel(self, self.pc.createDataChannel(CHANNEL_LABEL))
        if self.pc.getTransceivers() or self.data is not None:
            self._ensure_transport()
        self.negotiator.request()

    def _add_publish_slots(self) -> None:
        """The ``recvonly`` sections the client may publish on; once, before
        any forwarded section.

        Clients bind the send transceivers they made before the first offer
        to its first section of each kind (webrtcbin, aiortc, browsers with
        ``addTransceiver`` first): with a forwarded track first, they would
        try to send on a section the server sends on, and publish nothing.
        """
        if self._publish_slots is not None:
            return
        self._publish_slots = []
        simulcast = self.config.forwarding.simulcast
        if simulcast:
            rtc.register_simulcast_extensions()
        for kind in self.config.publish_kinds:
            transceiver = self._add_transceiver(kind, "recvonly")
            if kind == "video":
                self.restrict_video_codecs(transceiver)
                if simulcast:
                    self._simulcast_slots.append(transceiver)
            self._publish_slots.append(transceiver)

    def restrict_video_codecs(self, transceiver: RTCRtpTransceiver) -> None:
        """Let a receiving video transceiver accept only the room's codecs."""
        if self._video_codecs:
            transceiver.setCodecPreferences(_capabilities("video", self._video_codecs))

    def _ensure_transport(self) -> rtc.RtpOutput:
        """Set up the tap and output once the connection has a transport
        (its first transceiver or data channel)."""
        if self._output is None:
            ice = self.config.ice
            rtc.configure_ice(
                self.pc,
                username_fragment=self._ice_username_fragment,
                password=self._ice_password,
                host_addresses=ice.host_addresses,
                announced_address=ice.announced_address,
                lite=ice.lite,
                port_range=ice.port_range,
                shared_port=ice.shared_port,
            )
            rtc.set_consent_timing(self.pc, ice.consent_interval, ice.consent_failures)
            transport = rtc.bundle_transport_of(self.pc)
            self._tap = rtc.RtpTap(transport)
            self._output = rtc.RtpOutput(transport)
        return self._output

    async def leave(self, reason: str = "left") -> None:
        """Leave the room: unpublish, unsubscribe, close the connection."""
        await self.room.remove(self, reason)

    async def leave_unless_connected(self, reason: str) -> bool:
        """Leave unless the peer connection is established; whether it left.

        For credentials that expired before the client connected.
        """
        if self.closed or self.pc.connectionState == "connected":
            return False
        await self.leave(reason)
        return True

    async def close(self) -> None:
        """Close everything this participant owns. Idempotent.

        Prefer :meth:`leave`, which also tells the rest of the room.
        """
        if self.closed:
            return
        self.closed = True
        self.negotiator.close()
        if self._media_watch is not None:
            self._media_watch.cancel()
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rtcp_task
        for subscription in self.subscriptions.values():
            subscription.downtrack.close()
        self.subscriptions.clear()
        for forwarder in self.publications.values():
            forwarder.close()
        self.publications.clear()
        if self.data is not None:
            self.data.close()
        # aiortc may hold the peer connection a little longer in its closing
        # tasks; the hooks must not keep this participant alive meanwhile.
        for hooks in self._sender_hooks.values():
            hooks.on_parameters = None
            hooks.on_rtcp = None
        if self._tap is not None:
            self._tap.detach_all()
        await self.pc.close()
        self._closed_event.set()

    async def wait_closed(self) -> None:
        """Return once the participant is closed (left, failed or room closed)."""
        await self._closed_event.wait()

    # ------------------------------------------------------------------
    # signalling: messages in, messages out

    async def handle(self, message: ClientMessage) -> None:
        """Process one message from the client; problems are answered with an error.

        Messages beyond the rate limit (``LimitsConfig.messages_per_second``)
        are dropped.
        """
        if await self.within_rate_limit():
            await self.handle_unlimited(message)

    async def within_rate_limit(self) -> bool:
        """Count one client message against the rate limit; False: drop it."""
        if self._rate.allow():
            return True
        if self._rate.should_warn():  # told at most once per second
            await self.refuse(SignallingError("rate_limited", "too many messages"))
        return False

    async def handle_unlimited(self, message: ClientMessage) -> None:
        """:meth:`handle` for a message already counted by :meth:`within_rate_limit`."""
        if self.closed:
            return
        try:
            if isinstance(message, Answer):
                await self.negotiator.apply_answer(message.sdp)
                await self._check_declined(message.sdp)
            elif isinstance(message, Candidate):
                await self.add_candidate(message)
            elif isinstance(message, Leave):
                await self.leave("left")
            elif isinstance(message, VideoQuality):
                self.limit_video_quality(message.track_id, message.max_layer)
            elif isinstance(message, Record):
                await self.room.control_recording(self, message.on)
            else:
                raise SignallingError("unknown_type", f"unexpected message {message!r}")
        except SignallingError as exc:
            await self.refuse(exc)

    def limit_video_quality(self, track_id: str, max_layer: str) -> None:
        """Receive no simulcast layer of ``track_id`` above ``max_layer``
        (``"q"``, ``"h"`` or ``"f"``); raises :class:`SignallingError` for a
        track this participant does not receive."""
        subscription = self.subscriptions.get(track_id)
        if subscription is None or subscription.forwarder.kind != "video":
            raise SignallingError(
                "unknown_track", f"no video track {track_id[:80]!r} is received"
            )
        subscription.downtrack.limit_layer(
            VideoQuality.LAYERS.index(max_layer), time.monotonic()
        )

    async def refuse(self, error: SignallingError) -> None:
        """Answer a client message the server cannot accept with an error."""
        self.signalling_errors += 1
        logger.debug("%s: refused a message: %s", self, error.code)
        await self.send(Error.of(error))

    def _watch_media_once_connected(self) -> None:
        if self.pc.connectionState == "connected" and self._media_watch is None:
            self._media_watch = asyncio.get_running_loop().create_task(
                self._check_media_arrives()
            )

    async def _check_media_arrives(self) -> None:
        """Tell the client, and the log, once, when it said it publishes
        (answered a publish slot ``sendonly``) but no media arrived
        :data:`NO_MEDIA_NOTICE_AFTER` seconds after connecting: a client
        sending with payload types or SSRCs it did not announce, or nothing
        at all, would otherwise fail silently."""
        await asyncio.sleep(NO_MEDIA_NOTICE_AFTER)
        slots = self._publish_slots or []
        publishing = [
            t for t in slots if t.currentDirection in ("recvonly", "sendrecv")
        ]
        received = sum(f.stats.packets_received for f in self.publications.values())
        if self.closed or not publishing or received:
            return
        kinds = ", ".join(t.kind for t in publishing)
        logger.warning(
            "%s answered that it sends %s, but nothing arrived in %g s",
            str(self),  # a name, not the object: handlers may keep records
            kinds,
            NO_MEDIA_NOTICE_AFTER,
        )
        await self.send(
            Error.of(
                SignallingError(
                    "no_media",
                    f"your answer says you send {kinds}, but no media arrived in "
                    f"{NO_MEDIA_NOTICE_AFTER:g} s: send with the payload types of "
                    "the offer, on the SSRCs of your answer",
                )
            )
        )

    async def _check_declined(self, answer: str) -> None:
        """Tell the client, and the log, once, when its answer declines tracks
        the server forwards to it (``inactive``): nothing flows on them, and
        no error would show it on either side otherwise."""
        if self._warned_declined:
            return
        offer = self.pc.localDescription
        offered = rtc.section_directions(str(offer.sdp)) if offer else {}
        answered = rtc.section_directions(answer)

        def declined_section(mid: str | None) -> bool:
            # a track the answered offer sent (not one that came since)
            return offered.get(mid or "") == "sendonly" and answered.get(mid or "") in (
                "inactive",
                "sendonly",
            )

        declined = sorted(
            track_id
            for track_id, subscription in self.subscriptions.items()
            if declined_section(subscription.transceiver.mid)
        )
        if not declined:
            return
        self._warned_declined = True
        logger.warning(
            "%s answered %s inactive: it receives nothing on them", str(self), declined
        )
        await self.send(
            Error.of(
                SignallingError(
                    "track_declined",
                    f"your answer declines {', '.join(declined)} (inactive): nothing "
                    "flows on them. Publish on the offer's recvonly sections and "
                    "receive on its sendonly ones (see the protocol's Negotiation)",
                )
            )
        )

    def pending_offer(self) -> str | None:
        """The SDP of the offer waiting for the client's answer, if any.

        For adapters whose client reconnects: it may have lost the offer.
        """
        if self.negotiator.awaiting_answer and self.pc.localDescription is not None:
            return str(self.pc.localDescription.sdp)
        return None

    async def fetch_pending_offer(self) -> str | None:
        """:meth:`pending_offer`, awaitable as on a remote participant."""
        return self.pending_offer()

    @property
    def malformed_packets(self) -> int:
        """Incoming RTP/RTCP that could not be decrypted, parsed or routed
        (forged, replayed or oversized SRTP included), and datagrams to its
        ICE port that were dropped before aioice queued them."""
        tap = self._tap
        if tap is None:
            return 0
        return (
            tap.parse_errors
            + tap.unrouted
            + tap.rtcp_errors
            + tap.srtp_errors
            + sum(tap.datagrams_dropped.values())
        )

    def stats(self) -> ParticipantStats:
        """A snapshot of this participant's counters."""
        return ParticipantStats.of(self)

    async def send(self, message: ServerMessage) -> None:
        """Send a message to the client through the adapter's outbox."""
        try:
            await self._outbox(message)
        except Exception:
            logger.debug("outbox of %s failed", self.id, exc_info=True)

    async def _send_offer(self, sdp: str) -> None:
        mids = [t.mid for t in self._simulcast_slots if t.mid is not None]
        if mids:
            sdp = rtc.offer_simulcast(sdp, mids, DEFAULT_RIDS)
        await self.send(Offer(sdp=sdp))

    async def add_candidate(self, message: Candidate) -> None:
        """Add the client's ICE candidate; raises :class:`SignallingError`."""
        text = message.candidate.strip()
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        if not text:
            return  # end of candidates: aiortc needs no notice
        try:
            candidate = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts
            raise SignallingError("bad_candidate", "unparsable ICE candidate") from exc
        candidate.sdpMid = message.sdp_mid
        candidate.sdpMLineIndex = message.sdp_mline_index
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        try:
            await rtc.add_remote_candidate(self.pc, candidate)
        except rtc.TooManyCandidates as exc:
            raise SignallingError("too_many_candidates", str(exc)) from exc
        except Exception as exc:
            raise SignallingError(
                "bad_candidate", f"ICE candidate rejected: {exc}"
            ) from exc

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if (
            state in ("failed", "closed")
            and not self.closed
            and self._leave_task is None
        ):
            logger.info("participant %s: connection %s", self.id, state)
            self._leave_task = asyncio.get_running_loop().create_task(
                self.leave(f"connection {state}")
            )

    # ------------------------------------------------------------------
    # publishing

    def _on_track(self, track: Any) -> None:
        transceiver = next(
            t for t in self.pc.getTransceivers() if t.receiver.track is track
        )
        limit = self.config.limits.max_tracks_per_participant
        if len(self.publications) >= limit:
            logger.warning(
                "%s publishes more than %d tracks; not forwarded", str(self), limit
            )
            return
        kind = transceiver.kind
        same_kind = sum(1 for f in self.publications.values() if f.kind == kind)
        track_id = f"{self.id}/{kind}" + (f"-{same_kind + 1}" if same_kind else "")
        output = self._ensure_transport()
        forwarder = Forwarder(
            track_id=track_id,
            kind=kind,
            publisher_id=self.id,
            upstream=output,
            rtcp_ssrc=rtc.rtcp_ssrc_of(transceiver),
            config=self.config.forwarding,
        )

        def on_parameters(parameters: Any) -> None:
            first = not forwarder.codecs
            forwarder.set_codecs(
                [CodecInfo.from_aiortc(c) for c in parameters.codecs],
                {e.uri: e.id for e in parameters.headerExtensions},
                ssrcs=rtc.announced_ssrcs(parameters),
            )
            if first and not self.closed:
                self.publications[track_id] = forwarder
                self.room._publish(self, forwarder)

        rtc.take_over_receiver(transceiver.receiver, on_parameters, forwarder.on_rtcp)
        assert self._tap is not None
        self._tap.attach(transceiver.receiver, forwarder.on_rtp)

    # ------------------------------------------------------------------
    # subscribing

    def subscribe(self, forwarder: Forwarder) -> None:
        """Start receiving a forwarded track (renegotiates with the client).

        A client-offered session has fixed sections instead: the track
        becomes a candidate for one of its slots.
        """
        if self.closed or forwarder.track_id in self.subscriptions:
            return
        if self.answerer is not None:
            self.answerer.add_source(forwarder)
            return
        if not self.may_forward(forwarder):
            return
        self._add_publish_slots()  # first: before the forwarded sections
        transceiver = self._take_transceiver(forwarder.kind)
        codec = forwarder.primary_codec
        if codec is not None:
            with contextlib.suppress(ValueError):
                transceiver.setCodecPreferences(_capabilities_like(codec))
        rtc.set_sender_msid(
            transceiver.sender, forwarder.publisher_id, forwarder.track_id
        )
        self._forward(forwarder, transceiver)
        self.negotiator.request()

    def may_forward(self, forwarder: Forwarder) -> bool:
        """Whether the track has room for one more subscriber (the limit)."""
        limit = self.config.limits.max_subscribers_per_track
        if len(forwarder.downtracks) < limit:
            return True
        logger.warning(
            "%s not forwarded to %s: %d subscribers already",
            forwarder.track_id,
            self.id,
            limit,
        )
        return False

    def _forward(
        self, forwarder: Forwarder, transceiver: RTCRtpTransceiver
    ) -> Subscription:
        """Send ``forwarder``'s packets on ``transceiver``'s sender."""
        sender = transceiver.sender
        output = self._ensure_transport()
        downtrack = DownTrack(
            forwarder,
            output,
            rtc.sender_ssrc_of(sender),
            subscriber_id=self.id,
            resume=self._stream_positions.pop(id(sender), None),
        )
        hooks = self._sender_hooks_for(sender)
        hooks.on_parameters = lambda p: self._configure_downtrack(
            downtrack, transceiver, p
        )
        hooks.on_rtcp = downtrack.on_rtcp
        forwarder.add_downtrack(downtrack)
        subscription = Subscription(forwarder, downtrack, transceiver)
        self.subscriptions[forwarder.track_id] = subscription
        return subscription

    def unsubscribe(self, track_id: str) -> None:
        """Stop receiving a track; the client sees it end (renegotiates).

        In a client-offered session the track's slot switches to another
        track, or falls silent.
        """
        if self.answerer is not None:
            self.answerer.remove_source(track_id)
            return
        keep = self.config.reuse_transceivers and not self.closed
        subscription = self._stop_forwarding(track_id, keep_position=keep)
        if subscription is None or self.closed:
            return
        subscription.transceiver.direction = "inactive"
        if keep:
            self._idle_transceivers.append(subscription.transceiver)
        self.negotiator.request()

    def _stop_forwarding(
        self, track_id: str, *, keep_position: bool, bye: bool = True
    ) -> Subscription | None:
        """Stop a subscription's packets; remember where its stream stopped.

        ``bye=False`` keeps the client's track alive for a successor.
        """
        subscription = self.subscriptions.pop(track_id, None)
        if subscription is None:
            return None
        subscription.downtrack.close(bye=bye)
        self.room._retire_subscription(subscription.downtrack)
        sender = subscription.transceiver.sender
        hooks = self._sender_hooks_for(sender)
        hooks.on_parameters = None
        hooks.on_rtcp = None
        if keep_position:
            self._stream_positions[id(sender)] = subscription.downtrack.position()
        return subscription

    def _take_transceiver(self, kind: str) -> RTCRtpTransceiver:
        for transceiver in self._idle_transceivers:
            if transceiver.kind == kind:
                self._idle_transceivers.remove(transceiver)
                transceiver.direction = "sendonly"
                return transceiver
        return self._add_transceiver(kind, "sendonly")

    def _add_transceiver(self, kind: str, direction: str) -> RTCRtpTransceiver:
        """Every transceiver pysfu adds: its receiver, never run, is slimmed."""
        transceiver = self.pc.addTransceiver(kind, direction=direction)
        rtc.slim_receiver(transceiver.receiver)
        return transceiver

    def _sender_hooks_for(self, sender: RTCRtpSender) -> rtc.SenderHooks:
        hooks = self._sender_hooks.get(id(sender))
        if hooks is None:
            hooks = self._sender_hooks[id(sender)] = rtc.take_over_sender(sender)
        return hooks

    def _configure_downtrack(
        self, downtrack: DownTrack, transceiver: RTCRtpTransceiver, _parameters: Any
    ) -> None:
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
                "%s cannot receive %s: no codec in common", self.id, forwarder.track_id
            )
            return
        extensions = extension_id_table(
            forwarder.header_extensions,
            {e.uri: e.id for e in rtc.negotiated_header_extensions(transceiver)},
            set(self.config.forwarding.forwarded_extensions),
        )
        downtrack.configure(payload_types, extensions, clock_rate)

    # ------------------------------------------------------------------
    # RTCP: receiver reports to the publisher, sender reports to the subscriber

    async def _run_rtcp(self) -> None:
        interval = self.config.forwarding.rtcp_interval
        while True:
            # randomized as RFC 3550 asks, on the grid all participants share
            await sleep_slotted(interval * (0.5 + random.random()))
            try:
                self._send_reports()
            except Exception:
                logger.exception("RTCP reports for %s failed", self.id)

    def _send_reports(self) -> None:
        # Synchronous on purpose: a loop variable held across an await in
        # _run_rtcp would keep the last subscription (and through it a peer
        # that already left) alive until the next report.
        output = self._output
        if output is None or not output.connected:
            return
        now = time.monotonic()
        for forwarder in self.publications.values():
            reports = forwarder.receiver_reports(now)
            if reports:
                packet = rtc.RtcpRrPacket(ssrc=forwarder.rtcp_ssrc, reports=reports)
                output.send_rtcp(bytes(packet))
        for subscription in self.subscriptions.values():
            data = subscription.downtrack.sender_report(None, now)
            if data is not None:
                output.send_rtcp(data)

    # ------------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        return {"participant_id": self.id, "role": self.role.value, "name": self.name}

    def __repr__(self) -> str:
        return f"<Participant {self.id} ({self.role.value}) in {self.room.id}>"


def _capabilities(kind: str, names: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    """Sender capabilities of ``kind`` with the given codec names, in that order."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [
        c for name in names for c in capabilities if c.name.lower() == name.lower()
    ]
    return chosen + [c for c in capabilities if c.name.lower() == "rtx"]


def _capabilities_like(codec: CodecInfo) -> list[RTCRtpCodecCapability]:
    """Capabilities a subscriber can be offered to receive ``codec`` unchanged."""
    capabilities = RTCRtpSender.getCapabilities(codec.mime_type.split("/")[0]).codecs
    matching = [
        c
        for c in capabilities
        if c.name.lower() == codec.name
        and CodecInfo(0, c.mimeType, c.clockRate, c.channels, c.parameters).same_format(
            codec
        )
    ]
    if not matching:
        raise ValueError(f"no capability matches {codec.mime_type}")
    return matching
