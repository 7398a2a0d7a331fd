"""Sessions fixed by the client's offer: the WHIP and WHEP way.

Normally pysfu's server is the only offerer (:mod:`pysfu.peer.offering`) and
renegotiates whenever a track comes or goes. WHIP (RFC 9725) and WHEP
clients offer instead, once, and never renegotiate. A participant created
with a :class:`ClientOffer` is such a session; :class:`AnsweringSession` answers the
offer and afterwards maps the room's tracks onto the fixed sections:

- :attr:`Purpose.PUBLISH` (WHIP): every section the client sends on
  (``sendonly``/``sendrecv``) becomes a published track, forwarded like any
  other. The server sends nothing back. With simulcast on
  (``ForwardingConfig.simulcast``), a video section offered as simulcast
  (``a=simulcast:send`` with rids among q, h, f) is accepted as such: its
  layers are learned by rid, as on the server-offers path.
- :attr:`Purpose.WATCH` (WHEP): every section the client receives on
  (``recvonly``/``sendrecv``) becomes a *slot* fed by one track of that kind
  from the room, chosen among the tracks the room's eligibility policy lets
  this participant receive: the host's first, then the others in the order
  they were published. A slot switches when its track ends or a preferred one
  appears; the stream continues on the same SSRC without a jump, and video
  restarts on a keyframe. A slot with no track left stays silent.

The answer says ``a=setup:passive`` (see
:func:`pysfu._aiortc.answer_as_dtls_server`), and the server's ICE agent uses
the participant's credentials, as on the server-offers path.
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCRtpTransceiver, RTCSessionDescription

from .. import _aiortc as rtc
from ..errors import BadOffer, SignallingError
from ..forwarding import Forwarder
from ..forwarding.simulcast import DEFAULT_RIDS
from .session import SessionOwner
from .subscriptions import Subscriptions, restrict_video_codecs
from .transport import PeerTransport

__all__ = [
    "AnsweringSession",
    "ClientOffer",
    "Purpose",
    "Slot",
]

logger = logging.getLogger(__name__)


class Purpose(str, enum.Enum):
    """What a client-offered session is for."""

    #: WHIP: the client publishes.
    PUBLISH = "publish"
    #: WHEP: the client watches.
    WATCH = "watch"


@dataclass(frozen=True)
class ClientOffer:
    """A client's SDP offer and what the session is for."""

    sdp: str
    purpose: Purpose = Purpose.PUBLISH

    def check(self, video_codecs: tuple[str, ...] | None = None) -> rtc.ParsedOffer:
        """Raise :class:`~pysfu.errors.BadOffer` unless this offer can be answered.

        A publisher's video must use one of ``video_codecs`` (the room's
        restriction) if given. Checking changes nothing, so an adapter can
        check before it spends a credential or a seat.
        """
        restrict = video_codecs if self.purpose is Purpose.PUBLISH else None
        try:
            parsed = rtc.parse_client_offer(self.sdp, video_codecs=restrict)
        except ValueError as exc:
            raise BadOffer(str(exc)) from None
        if not any(self.wants(m.direction) for m in parsed.media):
            verb = "sends" if self.purpose is Purpose.PUBLISH else "receives"
            raise BadOffer(f"no audio or video section {verb} media")
        return parsed

    def wants(self, direction: str) -> bool:
        """Whether a section of the offer with ``direction`` is used: one the
        client sends on (WHIP) or receives on (WHEP)."""
        if self.purpose is Purpose.PUBLISH:
            return direction in ("sendonly", "sendrecv")
        return direction in ("recvonly", "sendrecv")


@dataclass(eq=False)
class Slot:
    """A section the client receives on, and the room track feeding it."""

    kind: str
    transceiver: RTCRtpTransceiver
    source: Forwarder | None = None
    #: aiortc has started the sender: the negotiated codecs apply.
    ready: bool = False


class AnsweringSession:
    """Answers one participant's offer and keeps its slots fed."""

    def __init__(
        self,
        owner: SessionOwner,
        transport: PeerTransport,
        subscriptions: Subscriptions,
        offer: ClientOffer,
        *,
        video_codecs: tuple[str, ...] | None = None,
        host_id: Callable[[], str | None] = lambda: None,
        simulcast: bool = False,
    ) -> None:
        self._owner = owner
        self._simulcast = simulcast and offer.purpose is Purpose.PUBLISH
        self._transport = transport
        self._subscriptions = subscriptions
        self._video_codecs = video_codecs
        self._host_id = host_id
        self.offer = offer
        #: The SDP answer, once :meth:`start` returned.
        self.answer: str | None = None
        self.slots: list[Slot] = []
        # Tracks the participant may receive, in the order they appeared.
        # Weak: a track that ends while feeding no slot is never announced
        # here (its forwarder tells only its downtracks), and must not keep
        # its departed publisher's transport alive.
        self._sources: weakref.WeakValueDictionary[str, Forwarder] = (
            weakref.WeakValueDictionary()
        )
        subscriptions.on_source_closed = self.remove_source

    @property
    def publish_transceivers(self) -> list[RTCRtpTransceiver]:
        """None: the client chose its sections in its offer."""
        return []

    async def start(self) -> None:
        """Apply the offer and create the answer; raises :class:`BadOffer`."""
        transport = self._transport
        pc = transport.pc
        parsed = self.offer.check(self._video_codecs)
        # Transceivers made before the offer is applied are matched to its
        # sections in order, so directions and codec preferences are ours.
        for media in parsed.media:
            wanted = self.offer.wants(media.direction)
            if not wanted:
                direction = "inactive"
            elif self.offer.purpose is Purpose.PUBLISH:
                direction = "recvonly"
            else:
                direction = "sendonly"
            transceiver = transport.add_transceiver(media.kind, direction)
            if direction == "recvonly" and media.kind == "video":
                restrict_video_codecs(transceiver, self._video_codecs)
            if direction == "sendonly":
                same_kind = sum(1 for s in self.slots if s.kind == media.kind)
                suffix = f"-{same_kind + 1}" if same_kind else ""
                # the section's msid names the slot, not a publisher: the
                # source changes but the answer does not
                rtc.set_sender_msid(
                    transceiver.sender, "pysfu", f"whep/{media.kind}{suffix}"
                )
                slot = Slot(media.kind, transceiver)
                hooks = transport.sender_hooks(transceiver.sender)
                hooks.on_parameters = lambda _p, slot=slot: self._slot_ready(slot)
                self.slots.append(slot)
        if self._simulcast:
            # the rid extensions tag each layer's packets: negotiate them
            rtc.register_simulcast_extensions()
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=self.offer.sdp, type="offer")
            )
        except Exception as exc:
            raise BadOffer(f"the offer was rejected: {exc}") from exc
        transport.start()
        rtc.answer_as_dtls_server(pc)
        try:
            rtc.answer_with_offered_codecs(pc)
        except ValueError as exc:
            raise BadOffer(str(exc)) from None
        await pc.setLocalDescription(await pc.createAnswer())
        self.answer = str(pc.localDescription.sdp)
        if self._simulcast:
            self.answer = rtc.answer_simulcast(
                self.answer, self.offer.sdp, DEFAULT_RIDS
            )
        self._assign()

    async def apply_answer(self, sdp: str) -> None:
        """Always refused: this session made no offer."""
        raise SignallingError("unexpected_answer", "no offer is waiting for an answer")

    async def restart_ice(self) -> None:
        """Refused: a WHIP/WHEP client restarts ICE with a PATCH of its
        resource (:meth:`restart_ice_with`)."""
        raise SignallingError(
            "ice_restart_unsupported",
            "this session restarts ICE with a PATCH of its WHIP/WHEP resource",
        )

    def restart_ice_with(self, fragment: str) -> str:
        """An ICE restart from a WHIP/WHEP client (RFC 9725 section 4.3): take
        the client's new ``a=ice-ufrag``/``a=ice-pwd`` from the SDP
        ``fragment`` of its PATCH and return the server's fragment with its
        own fresh credentials. DTLS and SRTP are kept; the client's next
        checks with the new credentials select the pair (ICE-lite).

        Raises :class:`SignallingError` if the fragment lacks credentials or
        the connection has not started yet.
        """
        pc = self._transport.pc
        remote = rtc.ice_credentials_in(fragment)
        if remote is None:
            raise SignallingError(
                "bad_sdp", "the fragment has no a=ice-ufrag and a=ice-pwd"
            )
        try:
            rtc.validate_ice_credentials(remote.username_fragment, remote.password)
        except ValueError as exc:
            raise SignallingError("bad_sdp", str(exc)) from None
        if rtc.remote_ice_credentials(pc) is None:
            raise SignallingError("not_connected", "ICE has not started yet")
        local = rtc.restart_ice(pc)
        rtc.follow_remote_ice(pc, fragment)
        return (
            f"a=ice-ufrag:{local.username_fragment}\r\na=ice-pwd:{local.password}\r\n"
        )

    def pending_offer(self) -> str | None:
        """None: this session never offers."""
        return None

    def close(self) -> None:
        """Nothing to stop: the slots end with the participant's subscriptions."""

    # ------------------------------------------------------------------
    # the room's tracks

    def subscribe(self, forwarder: Forwarder) -> None:
        """A track this participant may receive appeared: a candidate for a slot."""
        if self._owner.closed or forwarder.track_id in self._subscriptions:
            return
        self._sources[forwarder.track_id] = forwarder
        self._assign()

    def unsubscribe(self, track_id: str) -> None:
        """A track ended, or may no longer be received: its slot switches to
        another track, or falls silent."""
        self.remove_source(track_id)

    def remove_source(self, track_id: str) -> None:
        """A track ended (or may no longer be received)."""
        if self._sources.pop(track_id, None) is None:
            return
        for slot in self.slots:
            if slot.source is not None and slot.source.track_id == track_id:
                self._detach(slot)
        self._assign()

    def _ranked(self, kind: str) -> list[Forwarder]:
        # forget tracks that ended while feeding no slot
        for track_id in [t for t, f in list(self._sources.items()) if f.closed]:
            del self._sources[track_id]
        candidates = [f for f in list(self._sources.values()) if f.kind == kind]
        host_id = self._host_id()
        # stable sort: the host's tracks first, the rest in order of appearance
        return sorted(candidates, key=lambda f: f.publisher_id != host_id)

    def _assign(self) -> None:
        """Feed each slot the best track of its kind not feeding an earlier slot."""
        if self.answer is None or self._owner.closed:
            return  # slots are fed once the answer exists
        for kind in ("audio", "video"):
            ranked = self._ranked(kind)
            for index, slot in enumerate(s for s in self.slots if s.kind == kind):
                wanted = ranked[index] if index < len(ranked) else None
                if slot.source is not wanted:
                    self._detach(slot)
                    if wanted is not None:
                        self._attach(slot, wanted)

    def _attach(self, slot: Slot, forwarder: Forwarder) -> None:
        subscriptions = self._subscriptions
        if not subscriptions.may_forward(forwarder):
            return
        subscription = subscriptions.attach(
            forwarder,
            slot.transceiver,
            on_parameters=lambda _p: self._slot_ready(slot),
        )
        slot.source = forwarder
        if slot.ready:
            subscriptions.configure(subscription)
        logger.debug("%s: slot %s fed by %s", self._owner, slot.kind, forwarder)

    def _detach(self, slot: Slot) -> None:
        if slot.source is None:
            return
        # no BYE: the client's track lives on, silent until the next source
        self._subscriptions.detach(slot.source.track_id, keep_position=True, bye=False)
        slot.source = None

    def _slot_ready(self, slot: Slot) -> None:
        slot.ready = True
        if slot.source is None:
            return
        subscription = self._subscriptions.get(slot.source.track_id)
        if subscription is not None:
            self._subscriptions.configure(subscription)
