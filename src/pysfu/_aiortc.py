"""The one place where pysfu touches aiortc and aioice internals.

aiortc is a complete WebRTC endpoint: it depacketizes, buffers and decodes
every received track and encodes every sent one. An SFU wants none of that; it
wants the decrypted RTP packets of a publisher and a way to encrypt and send
rewritten packets to each subscriber. aiortc offers no public API for either,
so this module hooks a small number of private methods *per instance* (aiortc
constructs its senders and receivers itself, so subclassing is not possible).

Every attribute used here is listed in :data:`HOOK_POINTS` and checked by
:func:`check_hook_points` when pysfu is imported, so an aiortc upgrade that
moves one of them fails loudly at import time instead of silently dropping
media. ``pyproject.toml`` pins the aiortc versions these hooks were checked
against.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aioice.stun
import pylibsrtp
from aiortc import (
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs import CODECS
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from ._rtp import RtpHeader, extension_checks, parse_header

__all__ = [
    "CODECS",
    "HOOK_POINTS",
    "RTCP_PSFB_APP",
    "RTCP_PSFB_FIR",
    "RTCP_PSFB_PLI",
    "RTCP_RTPFB_NACK",
    "AiortcIncompatible",
    "NackGenerator",
    "OfferedMedia",
    "ParsedOffer",
    "RTCRtpCodecParameters",
    "RTCRtpHeaderExtensionParameters",
    "RemoteBitrateEstimator",
    "RtcpByePacket",
    "RtcpPacket",
    "RtcpPsfbPacket",
    "RtcpReceiverInfo",
    "RtcpRrPacket",
    "RtcpRtpfbPacket",
    "RtcpSdesPacket",
    "RtcpSenderInfo",
    "RtcpSourceInfo",
    "RtcpSrPacket",
    "RtpHeader",
    "RtpOutput",
    "RtpPacket",
    "RtpTap",
    "SenderHooks",
    "StreamStatistics",
    "announced_ssrcs",
    "answer_as_dtls_server",
    "answer_problem",
    "bundle_transport_of",
    "check_hook_points",
    "configure_ice",
    "datagram_endpoint",
    "dtls_transport_of",
    "extension_checks_of",
    "negotiated_codecs",
    "negotiated_header_extensions",
    "pack_remb_fci",
    "parse_client_offer",
    "protect_rtp",
    "register_passthrough_codecs",
    "rtcp_ssrc_of",
    "sender_ssrc_of",
    "set_consent_timing",
    "set_sender_msid",
    "take_over_receiver",
    "take_over_sender",
    "unpack_remb_fci",
    "validate_ice_credentials",
]


# libsrtp, called directly on the hot path (see RtpOutput.send_rewritten)
_srtp_protect = _srtp_lib.srtp_protect
_SRTP_BUFFER = 1500  # as pylibsrtp's own buffer: packet + trailer must fit
_MAX_RTP = _SRTP_BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN
_RTP_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC at offset 2
_CONNECTED = DtlsState.CONNECTED


class AiortcIncompatible(RuntimeError):
    """The installed aiortc/aioice lacks an internal that pysfu hooks."""


# (object, attribute, required positional parameters or None for plain attributes)
HOOK_POINTS: list[tuple[type, str, tuple[str, ...] | None]] = [
    (RTCDtlsTransport, "_handle_rtp_data", ("self", "data", "arrival_time_ms")),
    (RTCDtlsTransport, "_handle_rtcp_data", ("self", "data")),
    (RTCDtlsTransport, "_register_rtp_receiver", ("self", "receiver", "parameters")),
    (RTCDtlsTransport, "_register_rtp_sender", ("self", "sender", "parameters")),
    (RTCDtlsTransport, "_unregister_rtp_receiver", ("self", "receiver")),
    (RTCDtlsTransport, "_unregister_rtp_sender", ("self", "sender")),
    (RTCDtlsTransport, "_set_role", ("self", "role")),
    (RtpRouter, "route_rtp", ("self", "packet")),
    (RTCRtpReceiver, "receive", ("self", "parameters")),
    (RTCRtpReceiver, "stop", ("self",)),
    (RTCRtpReceiver, "_handle_rtcp_packet", ("self", "packet")),
    (RTCRtpSender, "send", ("self", "parameters")),
    (RTCRtpSender, "stop", ("self",)),
    (RTCRtpSender, "_handle_rtcp_packet", ("self", "packet")),
    (RTCIceGatherer, "getLocalParameters", ("self",)),
    (RTCRtpTransceiver, "setCodecPreferences", ("self", "codecs")),
    (aioice.ice.Connection, "gather_candidates", ("self",)),
    (aioice.ice.Connection, "data_received", ("self", "data", "component")),
    (aioice.ice.StunProtocol, "datagram_received", ("self", "data", "addr")),
    (aioice.ice.Connection, "query_consent", ("self",)),
    (aioice.ice.Connection, "build_request", ("self", "pair", "nominate")),
    (aioice.ice.Connection, "close", ("self",)),
    (
        aioice.ice.Connection,
        "get_component_candidates",
        ("self", "component", "addresses"),
    ),
    (NackGenerator, "add", ("self", "packet")),
    (StreamStatistics, "add", ("self", "packet")),
    (
        RemoteBitrateEstimator,
        "add",
        ("self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"),
    ),
]


def check_hook_points() -> None:
    """Raise :class:`AiortcIncompatible` if any hooked internal has changed."""
    problems = []
    for owner, name, params in HOOK_POINTS:
        attr = getattr(owner, name, None)
        if attr is None:
            problems.append(
                f"{owner.__module__}.{owner.__qualname__}.{name} is missing"
            )
            continue
        if params is None:
            continue
        actual = tuple(inspect.signature(attr).parameters)
        if not set(params) <= set(actual):
            problems.append(
                f"{owner.__qualname__}.{name}{actual} no longer takes {params}"
            )
    # Attributes set in __init__ cannot be seen on the class: check a throwaway
    # connection and the receive-side state of a dtls transport.
    conn = aioice.ice.Connection(ice_controlling=False)
    for name in (
        "_protocols",
        "_local_username",
        "_local_password",
        "_nominated",
        "_local_candidates",
        "_local_candidates_start",
        "_local_candidates_end",
        "_components",
        "_transport_policy",
        "_use_ipv4",
        "_use_ipv6",
    ):
        if not hasattr(conn, name):
            problems.append(f"aioice Connection has no attribute {name}")
    for name in ("ice_controlling", "remote_is_lite", "_query_consent_task"):
        if not hasattr(conn, name):
            problems.append(f"aioice Connection has no attribute {name}")
    if "iceLite" not in {f.name for f in dataclasses.fields(RTCIceParameters)}:
        problems.append("RTCIceParameters has no iceLite field")
    if not hasattr(RTCIceTransport(RTCIceGatherer()), "_role_set"):
        problems.append("RTCIceTransport has no _role_set attribute")
    import aiortc.rtcpeerconnection as peerconnection

    for name in ("filter_preferred_codecs", "find_common_codecs"):
        if not callable(getattr(peerconnection, name, None)):
            problems.append(f"aiortc.rtcpeerconnection.{name} is missing")
    session = pylibsrtp.Session(
        pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    if not hasattr(session, "_srtp") or not hasattr(_srtp_lib, "srtp_protect"):
        problems.append("pylibsrtp Session has no _srtp context / srtp_protect")
    from aiortc.rtp import HeaderExtensionsMap

    if not hasattr(HeaderExtensionsMap(), "_HeaderExtensionsMap__ids"):
        problems.append("aiortc HeaderExtensionsMap has no __ids")
    if not hasattr(DtlsState, "CONNECTED"):
        problems.append("aiortc.rtcdtlstransport.State has no CONNECTED")
    if problems:
        raise AiortcIncompatible(
            "pysfu cannot run on this aiortc/aioice version: " + "; ".join(problems)
        )


# --------------------------------------------------------------------------
# Codecs aiortc cannot encode or decode, but an SFU can forward

#: Pass-through video codecs and the payload types they get (after aiortc's
#: 96-102), with an RTX payload type each.
PASSTHROUGH_VIDEO_CODECS: dict[str, tuple[int, dict[str, Any]]] = {
    "VP9": (103, {"profile-id": 0}),
    "AV1": (105, {}),
}


def register_passthrough_codecs(names: Iterable[str]) -> None:
    """Let peer connections negotiate video codecs aiortc has no codec for.

    This extends aiortc's process-wide codec table, so every
    ``RTCPeerConnection`` in the process offers and accepts them: fine for an
    SFU, which never decodes, but an aiortc *client* in the same process
    cannot decode such a track. Idempotent.
    """
    video = CODECS["video"]
    known = {c.mimeType.lower() for c in video}
    feedback = next(c.rtcpFeedback for c in video if c.mimeType.lower() == "video/vp8")
    for name in names:
        payload_type, parameters = PASSTHROUGH_VIDEO_CODECS[name.upper()]
        mime_type = f"video/{name.upper()}"
        if mime_type.lower() in known:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType=mime_type,
                clockRate=90000,
                payloadType=payload_type,
                rtcpFeedback=list(feedback),
                parameters=dict(parameters),
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            )
        )


def answer_problem(pc: RTCPeerConnection, sdp: str) -> str | None:
    """Why aiortc would refuse this answer half-way, or ``None``.

    ``setRemoteDescription`` applies an answer section by section and only
    then finds a section with no codec in common: the sections before it stay
    applied, and a corrected answer would not fire their track events again.
    Checking every section first keeps a refused answer from changing anything.
    """
    from aiortc import sdp as aiortc_sdp
    from aiortc.rtcpeerconnection import filter_preferred_codecs, find_common_codecs

    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises all sorts on garbage
        return f"unparsable SDP: {exc!r}"[:200]
    transceivers = {t.mid: t for t in pc.getTransceivers()}
    for media in description.media:
        if media.kind not in ("audio", "video"):
            continue
        transceiver = transceivers.get(media.rtp.muxId)
        if transceiver is None:
            return f"no {media.kind} section with mid {media.rtp.muxId!r} was offered"
        common = filter_preferred_codecs(
            find_common_codecs(CODECS[media.kind], media.rtp.codecs),
            transceiver._preferred_codecs,
        )
        if not common:
            return f"no codec in common for the {media.kind} section {media.rtp.muxId}"
    return None


@dataclass(frozen=True)
class OfferedMedia:
    """One audio or video section of a client's offer."""

    mid: str
    kind: str
    #: The client's direction: ``sendonly``, ``recvonly``, ``sendrecv``, ``inactive``.
    direction: str


@dataclass(frozen=True)
class ParsedOffer:
    """What the server needs to know of a client's offer before applying it."""

    media: list[OfferedMedia]
    #: The client's ICE username fragment (the first section's).
    ice_username_fragment: str | None


def parse_client_offer(
    sdp: str, *, video_codecs: Iterable[str] | None = None
) -> ParsedOffer:
    """Check a client's offer before any peer connection sees it.

    Raises ``ValueError`` saying what is wrong: unparsable, no audio or video,
    a section without a mid or ICE credentials, sections not bundled on one
    transport (pysfu forwards on one transport per participant), or a section
    with no codec pysfu can forward (``video_codecs``, if given, restricts
    video to those codec names).
    """
    from aiortc import sdp as aiortc_sdp
    from aiortc.rtcpeerconnection import find_common_codecs

    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises all sorts on garbage
        raise ValueError(f"unparsable SDP: {exc!r}"[:200]) from None
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise ValueError("the offer has no audio or video section")
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    bundled = set(bundle.items) if bundle is not None else set()
    allowed_video = {c.lower() for c in video_codecs} if video_codecs else None
    offered = []
    for section in media:
        mid = section.rtp.muxId
        if not mid:
            raise ValueError(f"a {section.kind} section has no a=mid")
        if len(media) > 1 and mid not in bundled:
            raise ValueError(
                f"section {mid} is not in the BUNDLE group: use the max-bundle policy"
            )
        ice = section.ice
        if ice is None or not ice.usernameFragment or not ice.password:
            raise ValueError(f"section {mid} has no a=ice-ufrag/a=ice-pwd")
        if section.dtls is None or not section.dtls.fingerprints:
            raise ValueError(f"section {mid} has no a=fingerprint")
        common = find_common_codecs(CODECS[section.kind], section.rtp.codecs)
        if section.kind == "video" and allowed_video is not None:
            common = [c for c in common if c.name.lower() in allowed_video]
        common = [c for c in common if c.name.lower() != "rtx"]
        if not common:
            names = sorted({c.name for c in section.rtp.codecs})
            raise ValueError(
                f"no codec pysfu can forward in the {section.kind} section {mid} "
                f"(offered: {', '.join(names) or 'none'})"
            )
        offered.append(OfferedMedia(mid, section.kind, section.direction or "sendrecv"))
    first = media[0].ice
    return ParsedOffer(offered, first.usernameFragment if first else None)


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """Make the coming answer say ``a=setup:passive``: pysfu is the DTLS server.

    Call between ``setRemoteDescription(offer)`` and ``createAnswer()``. An
    offer saying ``actpass`` leaves the role to the answerer, and aiortc
    then picks the client role. As DTLS client aiortc offers only ECDSA
    cipher suites, so a peer whose certificate is RSA (GStreamer's webrtcbin)
    fails the handshake; as server it accepts any client certificate. An
    offer that insists on a role (``active``/``passive``) keeps it.
    """
    from aiortc import sdp as aiortc_sdp

    remote = pc.remoteDescription
    if remote is None:
        raise RuntimeError("set the remote offer first")
    parsed = aiortc_sdp.SessionDescription.parse(remote.sdp)
    roles = {m.dtls.role if m.dtls else None for m in parsed.media}
    if roles != {"auto"}:
        return  # the client chose its role: aiortc already took the other one
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport._role == "auto":
            transport._set_role("server")


# --------------------------------------------------------------------------
# Reading negotiated state


def dtls_transport_of(transceiver: RTCRtpTransceiver) -> RTCDtlsTransport:
    """The DTLS transport carrying a transceiver's media (bundled or not)."""
    return transceiver.receiver.transport


def bundle_transport_of(pc: RTCPeerConnection) -> RTCDtlsTransport:
    """The DTLS transport everything of ``pc`` is bundled on (max-bundle):
    that of its first transceiver, or of its data channels if it has none."""
    transports = _dtls_transports(pc)
    if not transports:
        raise ValueError("the connection has no transceiver and no data channel")
    return transports[0]


def _dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The DTLS transports of a connection's transceivers and data channels."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    return list({id(t): t for t in transports}.values())


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """Codecs negotiated for a transceiver, in preference order."""
    return list(transceiver._codecs)


def negotiated_header_extensions(
    transceiver: RTCRtpTransceiver,
) -> list[RTCRtpHeaderExtensionParameters]:
    """RTP header extensions negotiated for a transceiver."""
    return list(transceiver._headerExtensions)


def announced_ssrcs(parameters: RTCRtpReceiveParameters) -> set[int]:
    """The media and RTX SSRCs a peer's SDP announced for a received track."""
    ssrcs = set()
    for encoding in parameters.encodings:
        if encoding.ssrc is not None:
            ssrcs.add(int(encoding.ssrc))
        if encoding.rtx is not None and encoding.rtx.ssrc is not None:
            ssrcs.add(int(encoding.rtx.ssrc))
    return ssrcs


def datagram_endpoint(
    dtls: RTCDtlsTransport,
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol, tuple[str, int]] | None:
    """The UDP transport, protocol and remote address of a DTLS transport's
    nominated candidate pair, or ``None`` before ICE has selected one.

    For benchmarks and tests that inject datagrams or pause a socket."""
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return None
    return pair.protocol.transport, pair.protocol, pair.remote_addr


def protect_rtp(dtls: RTCDtlsTransport, data: bytes) -> bytes:
    """Encrypt one RTP packet with a connected transport's SRTP session, without
    sending it (for load generators that inject datagrams)."""
    return bytes(dtls._tx_srtp.protect(data))


def sender_ssrc_of(sender: RTCRtpSender) -> int:
    """The media SSRC a sender announced in SDP."""
    return int(sender._ssrc)


def rtcp_ssrc_of(transceiver: RTCRtpTransceiver) -> int:
    """The SSRC used as sender of RTCP feedback about a received stream."""
    return int(transceiver.sender._ssrc)


def set_sender_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Set the ``a=msid`` a sender announces, so receivers can group tracks."""
    sender._stream_id = stream_id
    sender._track_id = track_id


# --------------------------------------------------------------------------
# Receiving: decrypted RTP straight from the transport, no jitter buffer


RtpSink = Callable[[RtpHeader, bytes, int], None]
RtcpSink = Callable[[Any], Awaitable[None]]


def extension_checks_of(extensions_map: Any) -> list[int]:
    """:func:`pysfu._rtp.parse_header`'s ``checks`` for the ids configured in
    an aiortc ``HeaderExtensionsMap``."""
    ids = getattr(extensions_map, "_HeaderExtensionsMap__ids")  # noqa: B009
    return extension_checks(ids)


#: aiortc's arrival times are milliseconds since the NTP epoch (1900).
_NTP_EPOCH_MS = 2_208_988_800_000


class RtpTap:
    """Diverts decrypted RTP of one DTLS transport to pysfu sinks.

    The stock path parses each packet, routes it to an ``RTCRtpReceiver`` and
    depacketizes, jitter-buffers and decodes it. The tap parses only the header
    (:func:`pysfu._rtp.parse_header`, which accepts what aiortc's parser
    accepts), keeps aiortc's routing and hands the header, the raw bytes and
    the arrival time to the sink registered for the receiver instead. Sinks
    are synchronous: a sink must never await, so one slow consumer cannot
    stall the receive loop.

    ``direct`` (default): once DTLS has produced SRTP keys, SRTP datagrams are
    decrypted and delivered straight from aioice's datagram callback instead
    of going through its ``asyncio.Queue`` and the DTLS transport's receive
    task (a task wake-up and a chain of awaits per packet). DTLS, SRTCP and
    STUN still take the stock path. aiortc's transport-level
    ``packetsReceived``/``bytesReceived`` then no longer count these packets.
    """

    def __init__(self, transport: RTCDtlsTransport, *, direct: bool = True) -> None:
        self._transport = transport
        self._sinks: dict[int, RtpSink] = {}
        self.parse_errors = 0
        self.unrouted = 0
        self.sink_errors = 0
        self.rtcp_errors = 0
        #: SRTP packets that failed authentication/replay checks (direct path).
        self.srtp_errors = 0
        self._checks: list[int] = []
        self._configure_checks()
        register = transport._register_rtp_receiver

        def register_rtp_receiver(receiver: Any, parameters: Any) -> None:
            register(receiver, parameters)  # configures aiortc's extension map
            self._configure_checks()

        transport._register_rtp_receiver = register_rtp_receiver  # type: ignore[method-assign]
        transport._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]
        self._handle_rtcp_stock = transport._handle_rtcp_data
        transport._handle_rtcp_data = self._handle_rtcp_data  # type: ignore[method-assign]
        if direct:
            self._divert_datagrams()

    def attach(self, receiver: RTCRtpReceiver, sink: RtpSink) -> None:
        self._sinks[id(receiver)] = sink

    def detach(self, receiver: RTCRtpReceiver) -> None:
        self._sinks.pop(id(receiver), None)

    def detach_all(self) -> None:
        self._sinks.clear()

    def _configure_checks(self) -> None:
        """What each negotiated header extension's value must look like."""
        self._checks = extension_checks_of(self._transport._rtp_header_extensions_map)

    def _divert_datagrams(self) -> None:
        dtls = self._transport
        conn = dtls.transport._connection
        queue_datagram = conn.data_received
        deliver = self._deliver
        connected = DtlsState.CONNECTED

        shortcut: list[Any] = []  # the protocols whose STUN parse we skip

        def data_received(data: bytes, component: int) -> None:
            # SRTP, not SRTCP (RFC 5761 payload types 192-208), once keyed
            srtp = dtls._rx_srtp
            if len(data) > _SRTP_BUFFER and 127 < data[0] < 192:
                # libsrtp's buffer cannot take it and pylibsrtp raises
                # ValueError, which would end aiortc's receive task (and the
                # connection) if the datagram took the stock path
                self.srtp_errors += 1
                return
            if (
                srtp is None
                or len(data) < 12
                or not 127 < data[0] < 192
                or 191 < data[1] < 209
                or dtls._state != connected
            ):
                queue_datagram(data, component)
                return
            if not shortcut:
                shortcut.extend(conn._protocols)
                for protocol in shortcut:
                    if hasattr(protocol, "local_candidate"):
                        _skip_stun_parse(protocol, data_received)
            try:
                plain = srtp.unprotect(data)
            except (pylibsrtp.Error, ValueError):  # forged, replayed, > 1500 bytes
                self.srtp_errors += 1
                return
            deliver(plain, int(time.time() * 1000) + _NTP_EPOCH_MS)

        conn.data_received = data_received  # type: ignore[method-assign]

    def _deliver(self, data: bytes, arrival_time_ms: int) -> None:
        # Never raises: an exception escaping into aiortc's receive loop (or
        # asyncio's datagram callback) would stop this publisher for good.
        transport = self._transport
        packet = parse_header(data, self._checks, transport._rtp_header_extensions_map)
        if packet is None:
            self.parse_errors += 1
            return
        try:
            receiver = transport._rtp_router.route_rtp(packet)  # type: ignore[arg-type]
            sink = self._sinks.get(id(receiver)) if receiver is not None else None
            if sink is None:
                self.unrouted += 1
                return
            sink(packet, data, arrival_time_ms)
        except Exception:
            self.sink_errors += 1

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self._deliver(data, arrival_time_ms)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        # aiortc's RTCP routing lets some malformed packets raise (a REMB
        # announcing more SSRCs than it holds: struct.error), which would end
        # the receive loop as above.
        try:
            await self._handle_rtcp_stock(data)
        except Exception:
            self.rtcp_errors += 1


def _skip_stun_parse(
    protocol: Any, data_received: Callable[[bytes, int], None]
) -> None:
    """Hand RTP/RTCP datagrams of an aioice protocol straight to ``data_received``.

    aioice tries to parse every datagram as STUN and takes the ``ValueError``
    as "not STUN": an exception per media packet. STUN's first two bits are
    0 (RFC 5389 section 6) while RTP and RTCP start with version 2 (first
    byte 128-191), so those can skip the attempt.
    """
    stock = protocol.datagram_received
    component = protocol.local_candidate.component

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            data_received(data, component)
        else:
            stock(data, addr)

    protocol.datagram_received = datagram_received


def take_over_receiver(
    receiver: RTCRtpReceiver,
    on_parameters: Callable[[RTCRtpReceiveParameters], None],
    on_rtcp: RtcpSink,
) -> None:
    """Stop aiortc from decoding a receiver's track; pysfu consumes it instead.

    Must be called before aiortc calls ``receiver.receive()`` (that is, from
    the peer connection's ``track`` event). The decoder thread and RTCP task
    that ``receive()`` would start are never created; the receiver is only
    registered with its transport so RTP and RTCP get routed to it.
    """
    registered: list[RTCDtlsTransport] = []

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        transport = receiver.transport
        if not registered:
            transport._register_rtp_receiver(receiver, parameters)
            registered.append(transport)
        on_parameters(parameters)

    async def stop() -> None:
        for transport in registered:
            transport._unregister_rtp_receiver(receiver)
        registered.clear()

    receiver.receive = receive  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign,assignment]


@dataclass
class SenderHooks:
    """What pysfu plugs into a taken-over sender (see :func:`take_over_sender`).

    The fields are swapped when a transceiver is reused for another track.
    """

    on_parameters: Callable[[RTCRtpSendParameters], None] | None = None
    on_rtcp: RtcpSink | None = None
    registered: list[RTCDtlsTransport] = field(default_factory=list)


def take_over_sender(sender: RTCRtpSender) -> SenderHooks:
    """Keep aiortc's encoder and RTP/RTCP tasks off a sender.

    pysfu writes packets for this sender itself (through :class:`RtpOutput`),
    so ``send()`` only registers the sender with its transport, which routes
    the subscriber's RTCP feedback (PLI, NACK, receiver reports) to it, and
    passes the negotiated parameters on. aiortc calls ``send()`` after every
    negotiation in which the transceiver sends.
    """
    hooks = SenderHooks()

    async def send(parameters: RTCRtpSendParameters) -> None:
        transport = sender.transport
        if not hooks.registered:
            transport._register_rtp_sender(sender, parameters)
            hooks.registered.append(transport)
        if hooks.on_parameters is not None:
            hooks.on_parameters(parameters)

    async def stop() -> None:
        for transport in hooks.registered:
            transport._unregister_rtp_sender(sender)
        hooks.registered.clear()

    async def handle_rtcp(packet: Any) -> None:
        if hooks.on_rtcp is not None:
            await hooks.on_rtcp(packet)

    sender.send = send  # type: ignore[method-assign]
    sender.stop = stop  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    return hooks


# --------------------------------------------------------------------------
# Sending: encrypt and hand to the socket without awaiting


class RtpOutput:
    """Encrypts and sends RTP/RTCP on one DTLS transport, synchronously.

    aiortc's ``_send_rtp`` is a chain of coroutines; for UDP it never really
    suspends, but awaiting it per subscriber per packet costs time and lets a
    failing subscriber raise into the publisher's receive loop. Here a send is
    a plain call: it returns ``False`` (and counts a drop) when the transport
    is not connected yet, is gone, or its socket buffer is full.

    The hot path, :meth:`send_rewritten`, copies a packet once into a buffer
    owned by this output, rewrites the fixed header there, encrypts it in place
    with libsrtp (pylibsrtp's own ``protect`` allocates and copies twice more)
    and hands a view of it to the UDP socket: no per-packet Python objects
    beyond the view.
    """

    #: A subscriber whose socket holds more than this many unsent bytes is
    #: slow; its packets are dropped rather than buffered without bound.
    max_write_buffer = 1 << 20

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._transport = transport
        self.dropped = 0
        # (socket.sendto, remote address, libsrtp context, the Session owning it)
        self._target: tuple[Callable[[Any, Any], int], Any, Any, Any] | None = None
        self._cdata = _srtp_ffi.new("unsigned char[]", _SRTP_BUFFER)
        self._memory = memoryview(_srtp_ffi.buffer(self._cdata))
        self._length = _srtp_ffi.new("int *")

    @property
    def connected(self) -> bool:
        return self._transport._state == DtlsState.CONNECTED

    def _socket(self) -> tuple[Any, tuple[str, int]] | None:
        dtls = self._transport
        if dtls._state != DtlsState.CONNECTED:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        udp = pair.protocol.transport
        if udp.is_closing():
            return None
        buffered = getattr(udp, "get_write_buffer_size", None)
        if buffered is not None and buffered() > self.max_write_buffer:
            return None
        return udp, pair.remote_addr

    def _resolve(self) -> tuple[Callable[[Any, Any], int], Any, Any, Any] | None:
        """Look up socket, address and SRTP context once; kept while the DTLS
        transport stays connected and sends succeed."""
        found = self._socket()
        if found is None or self._transport._tx_srtp is None:
            return None
        udp, addr = found
        sock = getattr(udp, "_sock", None)  # asyncio's socket: skips its checks
        sendto = sock.sendto if sock is not None else udp.sendto
        session = self._transport._tx_srtp
        self._target = (sendto, addr, session._srtp[0], session)
        return self._target

    def send_rewritten(
        self,
        data: bytes | bytearray,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
    ) -> bool:
        """Send a copy of RTP packet ``data`` with PT, sequence number,
        timestamp and SSRC replaced (marker, CSRCs, extensions and payload kept).
        """
        target = self._target
        if target is None or self._transport._state is not _CONNECTED:
            target = self._resolve()
        length = len(data)
        if target is None or length < 12 or length > _MAX_RTP:
            self.dropped += 1
            return False
        memory = self._memory
        memory[:length] = data
        memory[1] = (data[1] & 0x80) | payload_type
        _RTP_HEADER.pack_into(memory, 2, sequence_number, timestamp, ssrc)
        length_p = self._length
        length_p[0] = length
        if _srtp_protect(target[2], self._cdata, length_p):
            self.dropped += 1
            return False
        try:
            target[0](memory[: length_p[0]], target[1])
        except OSError:  # buffer full (EAGAIN), socket closed, unreachable
            self._target = None
            self.dropped += 1
            return False
        return True

    def send_rtp(self, data: bytes | bytearray) -> bool:
        target = self._socket()
        if target is None:
            self.dropped += 1
            return False
        protected = self._transport._tx_srtp.protect(bytes(data))
        target[0].sendto(protected, target[1])
        return True

    def send_rtcp(self, data: bytes) -> bool:
        target = self._socket()
        if target is None:
            self.dropped += 1
            return False
        protected = self._transport._tx_srtp.protect_rtcp(data)
        target[0].sendto(protected, target[1])
        return True


# --------------------------------------------------------------------------
# ICE: credentials chosen by the application, host addresses, announced address


def configure_ice(
    pc: RTCPeerConnection,
    *,
    username_fragment: str | None = None,
    password: str | None = None,
    host_addresses: Iterable[str] | None = None,
    announced_address: str | None = None,
    lite: bool = False,
) -> None:
    """Configure the server side ICE agent(s) of ``pc`` before gathering.

    - ``username_fragment``/``password``: the local ICE credentials. A peer
      must know the password to complete ICE (its connectivity checks are
      authenticated with it), which makes it usable as a join capability.
    - ``host_addresses``: the local addresses offered as host candidates;
      ``None`` keeps aioice's choice (every interface except loopback).
    - ``announced_address``: written into host candidates instead of the
      local address, for servers behind a 1:1 NAT.
    - ``lite``: announce ICE-lite (``a=ice-lite``) and stay the *controlled*
      agent even when this side offers, as mediasoup does. A pair is then
      selected only after the peer's nominating check arrives, and that check
      is authenticated with this side's password: a peer that does not know
      the password cannot complete ICE. (As controlling agent the server
      would nominate pairs on its own checks, which only prove that the
      server knows the *peer's* password.)

    Call after the peer connection has its first transceiver and before
    ``setLocalDescription``.
    """
    validate_ice_credentials(username_fragment, password)
    for dtls in _dtls_transports(pc):
        gatherer = dtls.transport.iceGatherer
        conn = gatherer._connection
        if username_fragment is not None:
            conn._local_username = username_fragment
        if password is not None:
            conn._local_password = password
        if host_addresses is not None or announced_address is not None:
            _override_gathering(conn, host_addresses, announced_address)
        if lite:
            _announce_lite(dtls.transport, gatherer)


def set_consent_timing(pc: RTCPeerConnection, interval: float, failures: int) -> None:
    """Check ICE consent (RFC 7675) every ``interval`` s; close after ``failures``.

    aioice checks every 5 s and gives up after 6 failures: a peer that
    vanished without a goodbye (killed, unplugged) then keeps its seat and
    resources for about 30 s. Call before the connection starts.
    """
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        conn.query_consent = _consent_checker(conn, interval, failures)  # type: ignore[method-assign,assignment]


def _consent_checker(
    conn: aioice.ice.Connection, interval: float, failures: int
) -> Callable[[], Awaitable[None]]:
    async def query_consent() -> None:  # aioice's loop, with our timing
        assert conn.remote_password is not None
        failed = 0
        while True:
            await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
            for pair in list(conn._nominated.values()):
                request = conn.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=conn.remote_password.encode("utf8"),
                        retransmissions=0,
                    )
                    failed = 0
                except aioice.stun.TransactionError:
                    failed += 1
            if failed >= failures:
                conn._query_consent_task = None  # close() must not cancel us
                await conn.close()
                return

    return query_consent


def _announce_lite(ice_transport: Any, gatherer: Any) -> None:
    conn = gatherer._connection
    conn.ice_controlling = False
    ice_transport._role_set = True  # aiortc would make the offerer controlling
    if getattr(gatherer, "_pysfu_lite", False):
        return
    local_parameters = gatherer.getLocalParameters

    def get_local_parameters() -> Any:
        return dataclasses.replace(local_parameters(), iceLite=True)

    gatherer.getLocalParameters = get_local_parameters
    gatherer._pysfu_lite = True


def validate_ice_credentials(
    username_fragment: str | None, password: str | None
) -> None:
    """Raise ``ValueError`` unless these are valid ICE credentials (RFC 8839).

    A username fragment is 4-256 and a password 22-256 ice-chars
    (``A-Z a-z 0-9 + /``).
    """
    if username_fragment is not None:
        aioice.ice.validate_username(username_fragment)
    if password is not None:
        aioice.ice.validate_password(password)


def _override_gathering(
    conn: aioice.ice.Connection,
    host_addresses: Iterable[str] | None,
    announced_address: str | None,
) -> None:
    if getattr(conn, "_pysfu_gathering", False):
        return
    addresses = list(host_addresses) if host_addresses is not None else None

    async def gather_candidates() -> None:
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        chosen: list[str] = []
        if conn._transport_policy == aioice.ice.TransportPolicy.ALL:
            chosen = (
                addresses
                if addresses is not None
                else aioice.ice.get_host_addresses(
                    use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6
                )
            )
        for component in conn._components:
            candidates = await conn.get_component_candidates(
                component=component, addresses=chosen
            )
            if announced_address is not None:
                for candidate in candidates:
                    if candidate.type == "host":
                        candidate.host = announced_address
            conn._local_candidates += candidates
        conn._local_candidates_end = True

    conn.gather_candidates = gather_candidates  # type: ignore[method-assign]
    conn._pysfu_gathering = True  # type: ignore[attr-defined]


check_hook_points()
