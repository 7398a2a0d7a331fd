"""What a participant's session is: how its SDP is negotiated.

Two implementations: :class:`~pysfu.peer.offering.OfferingSession` (the
server offers, the client answers, renegotiated as tracks come and go) and
:class:`~pysfu.peer.answering.AnsweringSession` (WHIP/WHEP: one client
offer, fixed sections). :class:`~pysfu.Participant` drives either through
:class:`Session` and never asks which one it has.
"""

from __future__ import annotations

from typing import Protocol

from aiortc import RTCRtpTransceiver

from ..forwarding import Forwarder
from ..messages import ServerMessage

__all__ = ["Session", "SessionOwner"]


class SessionOwner(Protocol):
    """What a session needs of the participant it negotiates for."""

    @property
    def id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    async def send(self, message: ServerMessage) -> None: ...


class Session(Protocol):
    """One participant's negotiation and what it receives."""

    async def start(self) -> None:
        """The first negotiation step: send an offer, or answer the client's."""

    def subscribe(self, forwarder: Forwarder) -> None:
        """A track this participant may receive."""

    def unsubscribe(self, track_id: str) -> None:
        """A track this participant may no longer receive."""

    async def apply_answer(self, sdp: str) -> None:
        """The client's answer; raises :class:`~pysfu.errors.SignallingError`."""

    async def restart_ice(self) -> None:
        """The client asked for an ICE restart; raises
        :class:`~pysfu.errors.SignallingError` where the session cannot."""

    def pending_offer(self) -> str | None:
        """The SDP of an offer waiting for the client's answer, if any."""

    @property
    def publish_transceivers(self) -> list[RTCRtpTransceiver]:
        """The sections the client was offered to publish on."""

    def close(self) -> None:
        """Stop negotiating (the participant is closing)."""
