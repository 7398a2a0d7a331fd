"""Server-driven SDP negotiation on one peer connection.

The scheme (the same as pion's ``sfu-ws`` example): the server is the only
offerer. Its first offer has ``recvonly`` sections for what the client may
publish and ``sendonly`` sections for what it already forwards to it; every
later change (a track to add or remove) is a new offer. The client only ever
answers, so offers can never collide (no glare) and no rollback is needed.
Changes that arrive while an offer waits for its answer are batched into the
next offer, sent as soon as the answer is applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCSessionDescription

from ._aiortc import accept_rejected_sections, answer_problem
from .errors import SignallingError

__all__ = [
    "Negotiator",
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
        self.offers_sent = 0
        self.answers_applied = 0

    @property
    def awaiting_answer(self) -> bool:
        return self._awaiting_answer

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
        self._awaiting_answer = False
        self.answers_applied += 1
        if self._changes_pending:
            self.request()

    def close(self) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


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
