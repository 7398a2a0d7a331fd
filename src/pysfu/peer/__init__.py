"""The server's end of one participant's peer connection.

- :class:`PeerTransport`: the connection itself (ICE, the packet tap and
  output, sender hooks, the RTCP tick).
- :class:`Subscriptions`: what the participant receives, a
  :class:`~pysfu.forwarding.DownTrack` per track on reusable transceivers.
- The session, how the SDP is negotiated (:class:`Session`): an
  :class:`OfferingSession` (the server offers, the client answers) or an
  :class:`AnsweringSession` (WHIP/WHEP: one client offer, fixed slots).

:class:`pysfu.Participant` composes them; applications rarely need these.
"""

from .answering import AnsweringSession, ClientOffer, Purpose, Slot
from .offering import Negotiator, OfferingSession
from .session import Session, SessionOwner
from .subscriptions import Subscription, Subscriptions
from .transport import PeerTransport

__all__ = [
    "AnsweringSession",
    "ClientOffer",
    "Negotiator",
    "OfferingSession",
    "PeerTransport",
    "Purpose",
    "Session",
    "SessionOwner",
    "Slot",
    "Subscription",
    "Subscriptions",
]
