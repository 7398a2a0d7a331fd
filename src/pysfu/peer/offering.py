"""The server offers, the client answers: pysfu's own negotiation.

The scheme (the same as pion's ``sfu-ws`` example): the server is the only
offerer. Its first offer has ``recvonly`` sections for what the client may
publish and ``sendonly`` sections for what it already forwards to it; every
later change (a track to add or remove) is a new offer. The client only ever
answers, so offers can never collide (no glare) and no rollback is needed.
Changes that arrive while an offer waits for its answer are batched into the
next offer, sent as soon as the answer is applied.

:class:`Negotiator` sends the offers of one peer connection and applies the
answers; :class:`OfferingSession` decides what is in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from .. import _aiortc as rtc
from .._aiortc import accept_rejected_sections, answer_problem
from ..config import SFUConfig
from ..errors import SignallingError
from ..forwarding import Forwarder
from ..forwarding.simulcast import DEFAULT_RIDS
from ..messages import Error, Offer
from .session import SessionOwner
from .subscriptions import Subscriptions, capabilities_like, restrict_video_codecs
from .transport import PeerTransport

__all__ = [
    "Negotiator",
    "OfferingSession",
    "offers_without_candidates",
]

logger = logging.getLogger(__name__)

#: Offers sent without a single ICE candidate, in this process: the peer can
#: never connect (no usable address; see ``IceConfig.host_addresses``).
offers_without_candidates = 0


class Negotiator:
    """Sends offers for one peer connection and applies the answers."""

    def __init__(
        self, pc: RTCPeerConnection, send_offer: Callable[[str], Awaitable[None]]
    ) -> None:
        self._pc = pc
        self._send_offer = send_offer
        self._changes_pending = False
        self._awaiting_answer = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._restart_ice = False
        self.offers_sent = 0
        self.answers_applied = 0
        #: Offers that restarted ICE (fresh local credentials).
        self.ice_restarts = 0

    @property
    def awaiting_answer(self) -> bool:
        """An offer went out and its answer has not been applied yet."""
        return self._awaiting_answer

    def restart_ice(self) -> None:
        """Send an offer with fresh ICE credentials (an ICE restart), as
        soon as allowed: at once, or once the offer in flight is answered.

        The credentials change when that offer is made, not before: the
        answer to an offer still in flight must match the credentials it
        was made with. DTLS and SRTP are kept (see
        :func:`pysfu._aiortc.restart_ice`).
        """
        self._restart_ice = True
        self.request()

    def request(self) -> None:
        """Note that the session changed; an offer follows as soon as allowed."""
        self._changes_pending = True
        if self._closed or self._awaiting_answer:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._offer())

    async def _offer(self) -> None:
        if self._closed or self._awaiting_answer or not self._changes_pending:
            return
        if not self._pc.getTransceivers() and self._pc.sctp is None:
            return  # nothing to negotiate yet; a later request() will
        self._changes_pending = False
        self._awaiting_answer = True
        try:
            if self._restart_ice:
                self._restart_ice = False
                rtc.restart_ice(self._pc)
                self.ice_restarts += 1
            await self._pc.setLocalDescription(await self._pc.createOffer())
            self.offers_sent += 1
            sdp = self._pc.localDescription.sdp
            if "a=candidate:" not in sdp:
                _count_offer_without_candidates()
            await self._send_offer(sdp)
        except Exception:
            # a participant leaving closes its connection under a pending
            # offer: expected, not worth an ERROR
            if not self._closed and self._pc.connectionState != "closed":
                logger.exception("creating or sending an offer failed")

    async def apply_answer(self, sdp: str) -> None:
        """Apply the client's answer; raises :class:`SignallingError` if unusable."""
        if not self._awaiting_answer:
            raise SignallingError(
                "unexpected_answer", "no offer is waiting for an answer"
            )
        offer = self._pc.localDescription
        if offer is not None:
            sdp, rejected = accept_rejected_sections(offer.sdp, sdp)
            if rejected:
                # e.g. Firefox offered H.264 it cannot decode: the rest applies
                logger.warning(
                    "the client rejected sections %s (port 0): applied as inactive",
                    rejected,
                )
        problem = answer_problem(self._pc, sdp)
        if problem is not None:
            raise SignallingError("bad_sdp", f"the answer was rejected: {problem}")
        try:
            await self._pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp, type="answer")
            )
        except Exception as exc:
            # The offer still stands: the client may answer again.
            raise SignallingError("bad_sdp", f"the answer was rejected: {exc}") from exc
        # the client's new credentials after a restart (aiortc reads them once)
        rtc.follow_remote_ice(self._pc, sdp)
        self._awaiting_answer = False
        self.answers_applied += 1
        if self._changes_pending:
            self.request()

    def close(self) -> None:
        """Send no more offers."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


class OfferingSession:
    """A session the server negotiates: it offers, the client answers.

    The first offer has the publish sections (``recvonly``), then a
    ``sendonly`` section per received track; a track that comes or goes is
    a new offer. Transceivers of ended tracks are reused
    (``SFUConfig.reuse_transceivers``), except with aiortc clients, which
    cannot receive on them again.
    """

    def __init__(
        self,
        owner: SessionOwner,
        transport: PeerTransport,
        subscriptions: Subscriptions,
        config: SFUConfig,
        *,
        video_codecs: tuple[str, ...] | None = None,
        open_data_channel: Callable[[], object] | None = None,
    ) -> None:
        self._owner = owner
        self._transport = transport
        self._subscriptions = subscriptions
        self._config = config
        self._video_codecs = video_codecs
        self._open_data_channel = open_data_channel
        self._pc = transport.pc
        #: Sends this session's offers and applies the answers.
        self.negotiator = Negotiator(self._pc, self._send_offer)
        # the sections the client may publish on (None: not made yet)
        self._publish_slots: list[RTCRtpTransceiver] | None = None
        #: video publish slots offered to receive simulcast (rids q, h, f)
        self._simulcast_slots: list[RTCRtpTransceiver] = []
        self._warned_declined = False
        # False once the client's answer shows it cannot receive again on a
        # section whose track ended (aiortc): it gets new sections instead
        self._client_reuses_sections = True
        subscriptions.on_source_closed = self.unsubscribe

    @property
    def publish_transceivers(self) -> list[RTCRtpTransceiver]:
        """The ``recvonly`` sections the client may publish on."""
        return list(self._publish_slots or [])

    async def start(self) -> None:
        """Offer the client its publish slots and what it already receives."""
        self._add_publish_slots()
        opened = False
        if self._open_data_channel is not None:
            # after the transceivers: it shares their DTLS transport (bundle)
            self._open_data_channel()
            opened = True
        if self._pc.getTransceivers() or opened:
            self._transport.start()
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
        simulcast = self._config.forwarding.simulcast
        if simulcast:
            rtc.register_simulcast_extensions()
        for kind in self._config.publish_kinds:
            transceiver = self._transport.add_transceiver(kind, "recvonly")
            if kind == "video":
                restrict_video_codecs(transceiver, self._video_codecs)
                if simulcast:
                    self._simulcast_slots.append(transceiver)
            self._publish_slots.append(transceiver)

    async def _send_offer(self, sdp: str) -> None:
        mids = [t.mid for t in self._simulcast_slots if t.mid is not None]
        if mids:
            sdp = rtc.offer_simulcast(sdp, mids, DEFAULT_RIDS)
        await self._owner.send(Offer(sdp=sdp))

    def subscribe(self, forwarder: Forwarder) -> None:
        """Start sending a forwarded track (renegotiates with the client)."""
        subscriptions = self._subscriptions
        if self._owner.closed or forwarder.track_id in subscriptions:
            return
        if not subscriptions.may_forward(forwarder):
            return
        self._add_publish_slots()  # first: before the forwarded sections
        transceiver = subscriptions.take_transceiver(forwarder.kind)
        codec = forwarder.primary_codec
        if codec is not None:
            with contextlib.suppress(ValueError):
                transceiver.setCodecPreferences(capabilities_like(codec))
        rtc.set_sender_msid(
            transceiver.sender, forwarder.publisher_id, forwarder.track_id
        )
        subscriptions.attach(forwarder, transceiver)
        self.negotiator.request()

    def unsubscribe(self, track_id: str) -> None:
        """Stop sending a track; the client sees it end (renegotiates)."""
        closed = self._owner.closed
        keep = (
            self._config.reuse_transceivers
            and self._client_reuses_sections
            and not closed
        )
        subscription = self._subscriptions.detach(track_id, keep_position=keep)
        if subscription is None or closed:
            return
        self._subscriptions.release(subscription.transceiver, reuse=keep)
        self.negotiator.request()

    async def apply_answer(self, sdp: str) -> None:
        """Apply the client's answer; raises :class:`SignallingError`."""
        await self.negotiator.apply_answer(sdp)
        if self._client_reuses_sections and rtc.made_by_aiortc(sdp):
            self._client_reuses_sections = False
            self._subscriptions.forget_idle_transceivers()
            if self._config.reuse_transceivers:
                logger.info(
                    "an aiortc client: a new section for each track it receives"
                )
        await self._check_declined(sdp)

    async def _check_declined(self, answer: str) -> None:
        """Tell the client, and the log, once, when its answer declines tracks
        the server forwards to it (``inactive``): nothing flows on them, and
        no error would show it on either side otherwise."""
        if self._warned_declined:
            return
        offer = self._pc.localDescription
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
            for track_id, subscription in self._subscriptions.by_track.items()
            if declined_section(subscription.transceiver.mid)
        )
        if not declined:
            return
        self._warned_declined = True
        logger.warning(
            "%s answered %s inactive: it receives nothing on them",
            str(self._owner),
            declined,
        )
        await self._owner.send(
            Error.of(
                SignallingError(
                    "track_declined",
                    f"your answer declines {', '.join(declined)} (inactive): nothing "
                    "flows on them. Publish on the offer's recvonly sections and "
                    "receive on its sendonly ones (see the protocol's Negotiation)",
                )
            )
        )

    async def restart_ice(self) -> None:
        """The client asked for an ICE restart (its network changed): a new
        offer with fresh ICE credentials follows (see
        :meth:`Negotiator.restart_ice`)."""
        self.negotiator.restart_ice()

    def pending_offer(self) -> str | None:
        """The SDP of the offer waiting for the client's answer, if any."""
        if self.negotiator.awaiting_answer and self._pc.localDescription is not None:
            return str(self._pc.localDescription.sdp)
        return None

    def close(self) -> None:
        """Send no more offers."""
        self.negotiator.close()


def _count_offer_without_candidates() -> None:
    global offers_without_candidates
    offers_without_candidates += 1
    if offers_without_candidates == 1:  # once: it is the same cause every time
        logger.warning(
            "an offer went out without any ICE candidate: no peer can connect. "
            "The server has no usable address (only loopback, or every "
            "IceConfig.host_addresses / port_range bind failed); set "
            "IceConfig(host_addresses=(...)), e.g. ('127.0.0.1',) on one machine"
        )
