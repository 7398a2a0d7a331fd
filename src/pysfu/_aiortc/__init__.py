"""The one place where pysfu touches aiortc and aioice internals.

aiortc is a complete WebRTC endpoint: it depacketizes, buffers and decodes
every received track and encodes every sent one. An SFU wants none of that; it
wants the decrypted RTP packets of a publisher and a way to encrypt and send
rewritten packets to each subscriber. aiortc offers no public API for either,
so this package hooks a small number of private methods *per instance* (aiortc
constructs its senders and receivers itself, so subclassing is not possible).

Every attribute used here is listed in :data:`HOOK_POINTS` and checked by
:func:`check_hook_points` when pysfu is imported, so an aiortc upgrade that
moves one of them fails loudly at import time instead of silently dropping
media. ``pyproject.toml`` pins the aiortc versions these hooks were checked
against.

The seam is a package of small modules, one job each: :mod:`.hooks` (what is
hooked, checked at import), :mod:`.sdp` (codecs, offers, answers),
:mod:`.transports` (reading negotiated state), :mod:`.receive` (decrypted RTP
in), :mod:`.send` (encrypted RTP out), :mod:`.estimator` (REMB estimates),
:mod:`.ice` (credentials, addresses, consent), :mod:`.udpsock` (each
connection's socket, read in batches with STUN first), :mod:`.udpmux` (one UDP
port shared by every connection) and :mod:`.sctp` (holding
peers to the advertised SCTP limits).
Import from ``pysfu._aiortc`` itself.
"""

from __future__ import annotations

from aiortc.codecs import CODECS
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
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

from ..rtp.header import RtpHeader
from .estimator import remote_bitrate_estimator, slim_receiver
from .hooks import HOOK_POINTS, AiortcIncompatible, check_hook_points
from .ice import (
    MAX_REMOTE_CANDIDATES,
    IceCredentials,
    TooManyCandidates,
    add_remote_candidate,
    configure_ice,
    consent_answers,
    default_host_addresses,
    follow_remote_ice,
    ice_credentials_in,
    ice_restarts,
    local_ice_credentials,
    new_ice_credentials,
    remote_ice_credentials,
    restart_ice,
    set_consent_timing,
    validate_ice_credentials,
)
from .nack import NackGenerator
from .receive import (
    RtpTap,
    SenderHooks,
    extension_checks_of,
    header_extensions,
    take_over_receiver,
    take_over_sender,
)
from .sctp import limit_sctp_reception
from .sdp import (
    OfferedMedia,
    ParsedOffer,
    accept_rejected_sections,
    answer_as_dtls_server,
    answer_problem,
    answer_simulcast,
    answer_with_offered_codecs,
    made_by_aiortc,
    offer_simulcast,
    offered_codecs_in_common,
    parse_client_offer,
    register_passthrough_codecs,
    register_simulcast_extensions,
    register_transport_cc,
    section_directions,
    simulcast_rids_answered,
)
from .send import RtpOutput
from .transports import (
    UDP_PAYLOAD_LIMIT,
    announced_ssrcs,
    bundle_transport_of,
    datagram_endpoint,
    dtls_transport_of,
    negotiated_codecs,
    negotiated_header_extensions,
    protect_rtp,
    rtcp_ssrc_of,
    sender_ssrc_of,
    set_sender_msid,
)
from .udpmux import UdpMux, udp_muxes

__all__ = [
    "CODECS",
    "HOOK_POINTS",
    "MAX_REMOTE_CANDIDATES",
    "RTCP_PSFB_APP",
    "RTCP_PSFB_FIR",
    "RTCP_PSFB_PLI",
    "RTCP_RTPFB_NACK",
    "UDP_PAYLOAD_LIMIT",
    "AiortcIncompatible",
    "IceCredentials",
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
    "TooManyCandidates",
    "UdpMux",
    "accept_rejected_sections",
    "add_remote_candidate",
    "announced_ssrcs",
    "answer_as_dtls_server",
    "answer_problem",
    "answer_simulcast",
    "answer_with_offered_codecs",
    "bundle_transport_of",
    "check_hook_points",
    "configure_ice",
    "consent_answers",
    "datagram_endpoint",
    "default_host_addresses",
    "dtls_transport_of",
    "extension_checks_of",
    "follow_remote_ice",
    "header_extensions",
    "ice_credentials_in",
    "ice_restarts",
    "limit_sctp_reception",
    "local_ice_credentials",
    "made_by_aiortc",
    "negotiated_codecs",
    "negotiated_header_extensions",
    "new_ice_credentials",
    "offer_simulcast",
    "offered_codecs_in_common",
    "pack_remb_fci",
    "parse_client_offer",
    "protect_rtp",
    "register_passthrough_codecs",
    "register_simulcast_extensions",
    "register_transport_cc",
    "remote_bitrate_estimator",
    "remote_ice_credentials",
    "restart_ice",
    "rtcp_ssrc_of",
    "section_directions",
    "sender_ssrc_of",
    "set_consent_timing",
    "set_sender_msid",
    "simulcast_rids_answered",
    "slim_receiver",
    "take_over_receiver",
    "take_over_sender",
    "udp_muxes",
    "unpack_remb_fci",
    "validate_ice_credentials",
]

check_hook_points()
