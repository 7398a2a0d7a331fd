"""Sessions fixed by the client's offer: the WHIP and WHEP way.

Normally pysfu's server is the only offerer (:mod:`pysfu.peer.offering`) and
renegotiates whenever a track comes or goes. WHIP (RFC 9725) and WHEP
clients offer instead, once, and never renegotiate. A participant created
with a :class:`ClientOffer` is such a session;
:class:`~pysfu.peer.answering.AnsweringSession` answers the offer and
afterwards maps the room's tracks onto the fixed sections:

- :attr:`Purpose.PUBLISH` (WHIP): every section the client sends on
  (``sendonly``/``sendrecv``) becomes a published track, forwarded like any
  other. The server sends nothing back.
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

This module keeps the names importable from here; the code lives in
:mod:`pysfu.peer.answering`.
"""

from __future__ import annotations

from .peer.answering import AnsweringSession, ClientOffer, Purpose, Slot

__all__ = ["Answerer", "AnsweringSession", "ClientOffer", "Purpose", "Slot"]

#: The former name of :class:`~pysfu.peer.answering.AnsweringSession`.
Answerer = AnsweringSession
