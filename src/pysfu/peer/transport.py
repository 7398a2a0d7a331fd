"""The server's end of one participant's peer connection, as a transport.

:class:`PeerTransport` owns the ``RTCPeerConnection`` and what pysfu plugs
into it: the ICE settings, the :class:`~pysfu._aiortc.RtpTap` that takes the
incoming packets, the :class:`~pysfu._aiortc.RtpOutput` that writes outgoing
ones, the hooks of taken-over senders and the periodic RTCP report tick. It
knows nothing of rooms, tracks or negotiation: the participant's session
decides what the transceivers are for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)

from .. import _aiortc as rtc
from .._slots import sleep_slotted
from ..config import SFUConfig
from ..rtp.twcc import MAX_PENDING

__all__ = ["TRANSPORT_FEEDBACK_INTERVAL", "PeerTransport", "ReportSender"]

logger = logging.getLogger(__name__)

#: Seconds between transport-wide feedback packets to a publisher that numbers
#: its packets (libwebrtc's receivers send one every 50-250 ms, 100 by default).
TRANSPORT_FEEDBACK_INTERVAL = 0.1

#: Called on each RTCP tick with the output, once it is connected: writes
#: the receiver and sender reports of everything on the connection.
ReportSender = Callable[["rtc.RtpOutput"], None]


class PeerTransport:
    """One peer connection: ICE, the packet tap and output, sender hooks.

    Transceivers are added with :meth:`add_transceiver`; the tap and output
    exist from :meth:`start` on (once the connection has its first
    transceiver or data channel, which share one bundled transport).
    """

    def __init__(
        self,
        config: SFUConfig,
        *,
        ice_username_fragment: str | None = None,
        ice_password: str | None = None,
        direct_receive: bool = True,
    ) -> None:
        """``direct_receive=False`` leaves incoming SRTP to aiortc's receive
        queue (see :class:`~pysfu._aiortc.RtpTap`); only for comparisons."""
        self._config = config
        self._direct_receive = direct_receive
        self._ice_username_fragment = ice_username_fragment
        self._ice_password = ice_password
        #: The peer connection (for the session's SDP work).
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
        #: Takes the incoming RTP/RTCP, from :meth:`start` on.
        self.tap: rtc.RtpTap | None = None
        #: Writes the outgoing RTP/RTCP, from :meth:`start` on.
        self.output: rtc.RtpOutput | None = None
        self._sender_hooks: dict[int, rtc.SenderHooks] = {}
        self._rtcp_task: asyncio.Task[None] | None = None
        self._feedback_task: asyncio.Task[None] | None = None
        #: Transport-wide feedback packets sent to the peer.
        self.transport_feedback_sent = 0
        self._closing = False

    @property
    def connection_state(self) -> str:
        """The peer connection's state (``"new"`` ... ``"closed"``)."""
        return str(self.pc.connectionState)

    def add_transceiver(self, kind: str, direction: str) -> RTCRtpTransceiver:
        """Every transceiver pysfu adds: its receiver, never run, is slimmed."""
        transceiver = self.pc.addTransceiver(kind, direction=direction)
        rtc.slim_receiver(transceiver.receiver)
        return transceiver

    def start(self) -> rtc.RtpOutput:
        """Set up ICE, the tap and the output, once; returns the output.

        Call once the connection has a transport (its first transceiver or
        data channel).
        """
        if self.output is None:
            ice = self._config.ice
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
            self.tap = rtc.RtpTap(transport, direct=self._direct_receive)
            self.tap.on_transport_feedback = self._start_transport_feedback
            self.output = rtc.RtpOutput(transport)
        return self.output

    def sender_hooks(self, sender: RTCRtpSender) -> rtc.SenderHooks:
        """The hooks of a taken-over sender (taken over on first use)."""
        hooks = self._sender_hooks.get(id(sender))
        if hooks is None:
            hooks = self._sender_hooks[id(sender)] = rtc.take_over_sender(sender)
        return hooks

    def clear_sender_hooks(self, sender: RTCRtpSender) -> None:
        """Unplug a sender's hooks (its track went away; it may be reused)."""
        hooks = self.sender_hooks(sender)
        hooks.on_parameters = None
        hooks.on_rtcp = None

    def attach_receiver(
        self,
        receiver: RTCRtpReceiver,
        on_parameters: Callable[[Any], None],
        on_rtcp: Callable[[Any, float], Awaitable[None]],
        on_rtp: Callable[..., None],
    ) -> None:
        """Take a receiver over: its parameters, RTCP and RTP go to pysfu
        (``on_rtcp`` gets each packet with ``time.monotonic()``)."""
        rtc.take_over_receiver(receiver, on_parameters, on_rtcp)
        self.start()
        assert self.tap is not None
        self.tap.attach(receiver, on_rtp)

    def start_reports(self, send_reports: ReportSender, owner: object) -> None:
        """Call ``send_reports`` on the RTCP interval, randomized as RFC 3550
        asks, on the grid all connections share; ``owner`` names it in logs."""
        self._rtcp_task = asyncio.get_running_loop().create_task(
            self._run_rtcp(send_reports, str(owner))
        )

    async def _run_rtcp(self, send_reports: ReportSender, owner: str) -> None:
        interval = self._config.forwarding.rtcp_interval
        while True:
            await sleep_slotted(interval * (0.5 + random.random()))
            # Synchronous on purpose: a subscription held across an await
            # would keep a peer that already left alive until the next report.
            output = self.output
            if output is None or not output.connected:
                continue
            try:
                send_reports(output)
            except Exception:
                logger.exception("RTCP reports for %s failed", owner)

    def _start_transport_feedback(self) -> None:
        """The peer numbers its packets transport-wide: report their arrival
        every :data:`TRANSPORT_FEEDBACK_INTERVAL` from now on."""
        if self._feedback_task is None and not self._closing:
            self._feedback_task = asyncio.get_running_loop().create_task(
                self._run_transport_feedback()
            )

    async def _run_transport_feedback(self) -> None:
        sender_ssrc = random.getrandbits(32)
        interval = TRANSPORT_FEEDBACK_INTERVAL
        failed = overflow_logged = False
        while True:
            # on a grid shared by all connections: one wake-up for all
            await sleep_slotted(interval, interval)
            tap, output = self.tap, self.output
            if tap is None or output is None or not output.connected:
                continue
            feedback = tap.transport_feedback
            if not feedback.pending:
                continue
            if feedback.overflowed and not overflow_logged:
                overflow_logged = True  # counted in feedback.overflowed
                logger.warning(
                    "more than %d packets numbered transport-wide in %.1f s: "
                    "the rest are reported lost, counted from now",
                    MAX_PENDING,
                    interval,
                )
            try:
                for packet in feedback.build(sender_ssrc, tap.transport_feedback_ssrc):
                    if output.send_rtcp(packet):
                        self.transport_feedback_sent += 1
            except Exception:
                if not failed:  # once: it would repeat ten times a second
                    logger.exception("transport-wide feedback failed")
                    failed = True

    async def stop_reports(self) -> None:
        """Stop the RTCP tick and the transport-wide feedback (first thing
        when closing)."""
        self._closing = True
        for task in (self._rtcp_task, self._feedback_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def close(self) -> None:
        """Unplug every hook, then close the peer connection."""
        await self.stop_reports()
        # aiortc may hold the peer connection a little longer in its closing
        # tasks; the hooks must not keep their owners alive meanwhile.
        for hooks in self._sender_hooks.values():
            hooks.on_parameters = None
            hooks.on_rtcp = None
        if self.tap is not None:
            self.tap.detach_all()
        await self.pc.close()

    @property
    def malformed_packets(self) -> int:
        """Incoming RTP/RTCP that could not be decrypted, parsed or routed
        (forged, replayed or oversized SRTP included), and datagrams to its
        ICE port that were dropped before aioice queued them."""
        tap = self.tap
        if tap is None:
            return 0
        return (
            tap.parse_errors
            + tap.unrouted
            + tap.rtcp_errors
            + tap.srtp_errors
            + sum(tap.datagrams_dropped.values())
        )
