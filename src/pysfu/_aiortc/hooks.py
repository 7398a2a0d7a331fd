"""Hook points: every aiortc/aioice internal pysfu uses, checked at import."""

from __future__ import annotations

import dataclasses
import inspect

import aioice.ice
import aioice.stun
import pylibsrtp
from aiortc import (
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtcsctptransport import DataChunk, InboundStream, RTCSctpTransport
from pylibsrtp._binding import lib as _srtp_lib


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
    # what each datagram of the receive task costs (transports.meter_dtls_receive)
    (RTCDtlsTransport, "_recv_next", ("self",)),
    (aioice.ice.Connection, "recv", ("self",)),  # RTCIceTransport._recv
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
    # the shared socket (udpmux): a protocol per connection over a muxed transport
    (aioice.ice.StunProtocol, "__init__", ("self", "receiver")),
    (aioice.ice.StunProtocol, "connection_made", ("self", "transport")),
    (aioice.ice.StunProtocol, "connection_lost", ("self", "exc")),
    # a socket per connection read by pysfu (udpsock): errors go to the protocol
    (aioice.ice.StunProtocol, "error_received", ("self", "exc")),
    (
        aioice.ice.Connection,
        "request_received",
        ("self", "message", "addr", "protocol"),
    ),
    (aioice.ice.Connection, "query_consent", ("self",)),
    (aioice.ice.Connection, "build_request", ("self", "pair", "nominate")),
    (
        aioice.ice.StunProtocol,
        "request",
        ("self", "request", "addr", "integrity_key", "retransmissions"),
    ),
    (aioice.ice.Connection, "close", ("self",)),
    (aioice.ice.Connection, "add_remote_candidate", ("self", "remote_candidate")),
    (aioice.ice.Connection, "check_incoming", ("self", "message", "addr", "protocol")),
    (aioice.ice.Connection, "check_start", ("self", "pair")),
    (aioice.ice.Connection, "check_state", ("self", "pair", "state")),
    (aioice.ice.Connection, "check_complete", ("self", "pair")),
    (aioice.ice.Connection, "_check_periodic", ("self",)),
    (aioice.ice.Connection, "_remote_candidates_expected", ("self",)),
    (aioice.ice.Connection, "switch_role", ("self", "ice_controlling")),
    # an ICE restart: which USERNAME a check may carry (see ice.restart_ice)
    (aioice.ice.Connection, "_valid_username", ("self", "username")),
    (
        aioice.ice.Connection,
        "get_component_candidates",
        ("self", "component", "addresses"),
    ),
    (RTCSctpTransport, "_receive_data_chunk", ("self", "chunk")),
    (RTCSctpTransport, "_handle_data", ("self", "data")),
    (RTCSctpTransport, "_transmit", ("self",)),
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
        "_tie_breaker",
        "_check_list",
        "_check_list_done",
        "_queue",
        "_closing",
        "_remote_candidates",
        "stun_server",
        "turn_server",
        "local_username",
        "remote_username",
        "remote_password",
    ):
        if not hasattr(conn, name):
            problems.append(f"aioice Connection has no attribute {name}")
    for name in ("ice_controlling", "remote_is_lite", "_query_consent_task"):
        if not hasattr(conn, name):
            problems.append(f"aioice Connection has no attribute {name}")
    pair_fields = ("task", "state", "nominated", "remote_nominated", "protocol")
    if not all(
        hasattr(aioice.ice.CandidatePair(None, None), name)  # type: ignore[arg-type]
        for name in pair_fields
    ) or not hasattr(aioice.ice.CandidatePair.State, "SUCCEEDED"):
        problems.append(f"aioice CandidatePair lacks one of {pair_fields}")
    if "iceLite" not in {f.name for f in dataclasses.fields(RTCIceParameters)}:
        problems.append("RTCIceParameters has no iceLite field")
    ice_transport = RTCIceTransport(RTCIceGatherer())
    for name in ("_role_set", "_connection"):
        if not hasattr(ice_transport, name):
            problems.append(f"RTCIceTransport has no {name} attribute")
    import aiortc.rtcpeerconnection as peerconnection

    if not callable(getattr(aioice.ice, "server_reflexive_candidate", None)):
        problems.append("aioice.ice.server_reflexive_candidate is missing")
    for name in (
        "filter_preferred_codecs",
        "find_common_codecs",
        "is_codec_compatible",
    ):
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
    if not hasattr(InboundStream(), "reassembly"):
        problems.append("aiortc InboundStream has no reassembly")
    chunk = DataChunk()
    for name in ("flags", "stream_id", "stream_seq", "user_data"):
        if not hasattr(chunk, name):
            problems.append(f"aiortc DataChunk has no {name}")
    if "_RTCRtpReceiver__remote_bitrate_estimator" not in (
        RTCRtpReceiver.__init__.__code__.co_names
    ):
        problems.append("aiortc RTCRtpReceiver has no __remote_bitrate_estimator")
    # read and set between an offer and its answer (sdp.answer_with_offered_codecs)
    for name in ("_codecs", "_preferred_codecs"):
        if name not in RTCRtpTransceiver.__init__.__code__.co_names:
            problems.append(f"aiortc RTCRtpTransceiver has no {name}")
    if not hasattr(DtlsState, "CONNECTED"):
        problems.append("aiortc.rtcdtlstransport.State has no CONNECTED")
    if problems:
        raise AiortcIncompatible(
            "pysfu cannot run on this aiortc/aioice version: " + "; ".join(problems)
        )
