"""A participant: a member of a room, over one peer connection.

A :class:`Participant` is the member and its signalling endpoint: its
identity and role, its lifecycle (start, leave, close) and the messages to
and from its client. The connection itself is a
:class:`~pysfu.peer.transport.PeerTransport`; what it receives is a
:class:`~pysfu.peer.subscriptions.Subscriptions`; how its SDP is negotiated
is its session: an :class:`~pysfu.peer.offering.OfferingSession` (the server
offers) or, for a WHIP/WHEP client's offer, an
:class:`~pysfu.peer.answering.AnsweringSession`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiortc.sdp import candidate_from_sdp

from . import _aiortc as rtc
from .config import SFUConfig
from .datachannel import CHANNEL_LABEL, DataChannel
from .endpoint import ClientEndpoint
from .errors import SignallingError
from .forwarding import CodecInfo, DownTrack, Forwarder
from .messages import (
    Answer,
    Candidate,
    ClientMessage,
    Error,
    Leave,
    Record,
    RestartIce,
    ServerMessage,
    VideoQuality,
)
from .peer.answering import AnsweringSession, ClientOffer
from .peer.offering import Negotiator, OfferingSession
from .peer.session import Session
from .peer.subscriptions import Subscription, Subscriptions
from .peer.transport import PeerTransport
from .ports import Outbox, Role, RoomPort
from .stats import ParticipantStats, SubscriptionStats

__all__ = ["NO_MEDIA_NOTICE_AFTER", "Participant", "Role", "Subscription"]

logger = logging.getLogger(__name__)

#: Seconds after connecting by which media must arrive from a client whose
#: answer says it publishes; otherwise it gets the error ``no_media``.
NO_MEDIA_NOTICE_AFTER = 20.0


class Participant(ClientEndpoint):
    """A peer in a room, with the server's side of its peer connection.

    The participant owns its :class:`~pysfu.peer.transport.PeerTransport`,
    one :class:`~pysfu.forwarding.Forwarder` per track it publishes and one
    :class:`~pysfu.forwarding.DownTrack` per track it receives. Closing it
    closes all of them, and closing a forwarder closes its downtracks
    (closing cascades down, as in mediasoup). Create participants with
    :meth:`pysfu.Room.join`, not directly.
    """

    def __init__(
        self,
        room: RoomPort[Participant],
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
        super().__init__(config.limits)
        self.room = room
        self.id = participant_id
        #: A display name for the other clients (defaults to the id).
        self.name = name or participant_id
        self.role = role
        self.config = config
        #: Tracks this participant publishes, by track id.
        self.publications: dict[str, Forwarder] = {}
        self.closed = False
        #: Client messages refused with an error so far, by error code.
        self.signalling_errors_by_code: dict[str, int] = {}
        #: ICE restarts the client asked for (``restart_ice``).
        self.ice_restarts_requested = 0
        self._candidates_refused = False  # (logged the first time only)
        self._outbox = outbox
        self._video_codecs = video_codecs
        #: The server's end of the peer connection.
        self.transport = PeerTransport(
            config,
            ice_username_fragment=ice_username_fragment,
            ice_password=ice_password,
        )
        self.pc = self.transport.pc
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        #: What this participant receives.
        self.receiving = Subscriptions(
            self.transport, config, participant_id, retire=self._retire_downtrack
        )
        #: Tracks this participant receives, by track id.
        self.subscriptions: dict[str, Subscription] = self.receiving.by_track
        #: The relayed data channel (``SFUConfig.data_channels``), once started.
        self.data: DataChannel | None = None
        #: How this participant's SDP is negotiated: the server offers, or
        #: (WHIP/WHEP) it answers the client's ``offer`` once.
        self.session: Session
        if offer is not None:
            self.session = AnsweringSession(
                self,
                self.transport,
                self.receiving,
                offer,
                video_codecs=video_codecs,
                host_id=self._host_id,
                simulcast=config.forwarding.simulcast,
            )
        else:
            self.session = OfferingSession(
                self,
                self.transport,
                self.receiving,
                config,
                video_codecs=video_codecs,
                open_data_channel=self._open_data_channel
                if config.data_channels
                else None,
            )
        self._media_watch: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._watch_media_once_connected)
        self._leave_task: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()

    @property
    def video_codecs(self) -> tuple[str, ...] | None:
        """The video codecs this participant may publish (the room's), or all."""
        return self._video_codecs

    @property
    def answerer(self) -> AnsweringSession | None:
        """The session of a participant created with a client's offer
        (WHIP/WHEP), whose ``answer`` is the SDP answer; else ``None``."""
        session = self.session
        return session if isinstance(session, AnsweringSession) else None

    @property
    def negotiator(self) -> Negotiator | None:
        """What sends the server's offers (``None`` for a WHIP/WHEP session)."""
        session = self.session
        return session.negotiator if isinstance(session, OfferingSession) else None

    @property
    def signalling_errors(self) -> int:
        """Client messages refused with an error so far."""
        return sum(self.signalling_errors_by_code.values())

    @property
    def connection_state(self) -> str:
        """The peer connection's state (``"new"`` ... ``"closed"``)."""
        return self.transport.connection_state

    def _host_id(self) -> str | None:
        host = self.room.host
        return host.id if host is not None else None

    def _open_data_channel(self) -> None:
        self.data = DataChannel(self, self.pc.createDataChannel(CHANNEL_LABEL))

    def _retire_downtrack(self, downtrack: DownTrack) -> None:
        self.room.retire(SubscriptionStats.of(downtrack))

    # ------------------------------------------------------------------
    # lifecycle

    async def start(self) -> None:
        """Offer the client its publish slots and what it already receives.

        A participant created with a client's offer answers it instead
        (:meth:`~pysfu.peer.answering.AnsweringSession.start`; the answer is
        then in ``answerer.answer``).
        """
        self.transport.start_reports(self._send_reports, self.id)
        await self.session.start()

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
        self.session.close()
        if self._media_watch is not None:
            self._media_watch.cancel()
        # before any await: when a whole room closes, the others' forwarders
        # must not reach this participant's subscriptions (already counted)
        self.receiving.close()
        await self.transport.stop_reports()
        for forwarder in self.publications.values():
            forwarder.close()
        self.publications.clear()
        if self.data is not None:
            self.data.close()
        await self.transport.close()  # unplugs the hooks first
        self._closed_event.set()

    async def wait_closed(self) -> None:
        """Return once the participant is closed (left, failed or room closed)."""
        await self._closed_event.wait()

    # ------------------------------------------------------------------
    # signalling: messages in, messages out

    async def handle_unlimited(self, message: ClientMessage) -> None:
        """:meth:`handle` for a message already counted by :meth:`within_rate_limit`."""
        if self.closed:
            return
        try:
            if isinstance(message, Answer):
                await self.session.apply_answer(message.sdp)
            elif isinstance(message, Candidate):
                await self.add_candidate(message)
            elif isinstance(message, Leave):
                # "left" is final; a page going away may come back
                await self.leave("page unloaded" if message.rejoin else "left")
            elif isinstance(message, VideoQuality):
                self.limit_video_quality(message.track_id, message.max_layer)
            elif isinstance(message, Record):
                await self.room.control_recording(self, message.on)
            elif isinstance(message, RestartIce):
                await self.restart_ice()
            else:
                raise SignallingError("unknown_type", f"unexpected message {message!r}")
        except SignallingError as exc:
            await self.refuse(exc)

    async def restart_ice(self) -> None:
        """Restart ICE at the client's request (its network changed): a new
        offer with fresh ICE credentials follows; DTLS and SRTP are kept.
        Raises :class:`SignallingError` before the first negotiation and for
        a WHIP/WHEP session (which restarts with a PATCH of its resource)."""
        if self.pc.remoteDescription is None:
            raise SignallingError(
                "not_connected", "no ICE to restart before the first answer"
            )
        self.ice_restarts_requested += 1
        await self.session.restart_ice()

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
        codes = self.signalling_errors_by_code
        codes[error.code] = codes.get(error.code, 0) + 1
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
        slots = self.session.publish_transceivers
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

    def pending_offer(self) -> str | None:
        """The SDP of the offer waiting for the client's answer, if any.

        For adapters whose client reconnects: it may have lost the offer.
        """
        return self.session.pending_offer()

    async def fetch_pending_offer(self) -> str | None:
        """:meth:`pending_offer`, awaitable as on a remote participant."""
        return self.pending_offer()

    @property
    def malformed_packets(self) -> int:
        """Incoming RTP/RTCP that could not be decrypted, parsed or routed
        (forged, replayed or oversized SRTP included), and datagrams to its
        ICE port that were dropped before aioice queued them."""
        return self.transport.malformed_packets

    @property
    def transport_feedback_sent(self) -> int:
        """Transport-wide feedback packets sent to this participant (see
        :mod:`pysfu.rtp.twcc`)."""
        return self.transport.transport_feedback_sent

    def stats(self) -> ParticipantStats:
        """A snapshot of this participant's counters."""
        return ParticipantStats.of(self)

    async def send(self, message: ServerMessage) -> None:
        """Send a message to the client through the adapter's outbox."""
        try:
            await self._outbox(message)
        except Exception:
            logger.debug("outbox of %s failed", self.id, exc_info=True)

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
            # each is refused (an error to the client, counted), the log
            # says it once: a flood of them must not flood the log too
            if not self._candidates_refused:
                self._candidates_refused = True
                logger.warning(
                    "%s: refusing trickled ICE candidates beyond %d"
                    " (too_many_candidates)",
                    self,
                    rtc.MAX_REMOTE_CANDIDATES,
                )
            raise SignallingError("too_many_candidates", str(exc)) from exc
        except Exception as exc:
            raise SignallingError(
                "bad_candidate", f"ICE candidate rejected: {exc}"
            ) from exc

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            # before the publisher's first video frame: see Forwarder.on_connected
            for forwarder in list(self.publications.values()):
                forwarder.on_connected(forwarder.clock())
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
        output = self.transport.start()
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
                self.room.publish(self, forwarder)

        self.transport.attach_receiver(
            transceiver.receiver, on_parameters, forwarder.on_rtcp, forwarder.on_rtp
        )

    # ------------------------------------------------------------------
    # subscribing

    def subscribe(self, forwarder: Forwarder) -> None:
        """Start receiving a forwarded track (renegotiates with the client).

        A client-offered session has fixed sections instead: the track
        becomes a candidate for one of its slots.
        """
        self.session.subscribe(forwarder)

    def unsubscribe(self, track_id: str) -> None:
        """Stop receiving a track; the client sees it end (renegotiates).

        In a client-offered session the track's slot switches to another
        track, or falls silent.
        """
        self.session.unsubscribe(track_id)

    def may_forward(self, forwarder: Forwarder) -> bool:
        """Whether the track has room for one more subscriber (the limit)."""
        return self.receiving.may_forward(forwarder)

    # ------------------------------------------------------------------
    # RTCP: receiver reports to the publisher, sender reports to the subscriber

    def _send_reports(self, output: rtc.RtpOutput) -> None:
        # Synchronous on purpose (see PeerTransport.start_reports).
        now = time.monotonic()
        for forwarder in self.publications.values():
            reports = forwarder.receiver_reports(now)
            if reports:
                packet = rtc.RtcpRrPacket(ssrc=forwarder.rtcp_ssrc, reports=reports)
                output.send_rtcp(bytes(packet))
        self.receiving.send_reports(output, now)

    # ------------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        """How the other members see this one: its id, role and name."""
        return {"participant_id": self.id, "role": self.role.value, "name": self.name}

    def __repr__(self) -> str:
        return f"<Participant {self.id} ({self.role.value}) in {self.room.id}>"
