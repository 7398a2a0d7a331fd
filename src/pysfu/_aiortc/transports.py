"""Reading negotiated state: transports, codecs, SSRCs of a connection."""

from __future__ import annotations

import asyncio

import pylibsrtp
from aiortc import (
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
)
from pylibsrtp._binding import lib as _srtp_lib

from ..accounting import CpuAccount, metered
from ..rtp.header import REWRITTEN_FIELDS

_srtp_protect = _srtp_lib.srtp_protect
_SRTP_BUFFER = 1500  # pylibsrtp's own buffer (unprotect): packet + trailer must fit
#: The largest UDP payload (IPv4: 65535 - 20 bytes IP - 8 bytes UDP header).
#: What pysfu sends may be that long; the network fragments what its MTU cannot carry.
UDP_PAYLOAD_LIMIT = 65507
#: pysfu's send buffer: any datagram plus the longest SRTP trailer.
_SEND_BUFFER = UDP_PAYLOAD_LIMIT + pylibsrtp.SRTP_MAX_TRAILER_LEN
_RTP_HEADER = REWRITTEN_FIELDS  # sequence number, timestamp, SSRC at offset 2
_CONNECTED = DtlsState.CONNECTED


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


def cpu_account_of(dtls: RTCDtlsTransport) -> CpuAccount | None:
    """The CPU account of the participant a DTLS transport belongs to (set by
    :func:`pysfu._aiortc.configure_ice`), if any."""
    account = getattr(dtls.transport._connection, "_pysfu_cpu", None)
    return account if isinstance(account, CpuAccount) else None


def meter_dtls_receive(dtls: RTCDtlsTransport) -> None:
    """Charge the CPU time of each datagram the DTLS transport's receive task
    handles to the participant's account (:mod:`pysfu.accounting`): DTLS
    records (the handshake, the data channel's records) as ``data``, SRTCP
    (decryption, RTCP parsing and handling) as ``rtcp``, also when it fails
    to decrypt (forged or replayed), which costs the server as much and was
    charged to nobody. RTP that takes this path (before the direct path
    takes over, :class:`.receive.RtpTap`) is measured, not charged:
    forwarding media is the service. Meters inside (SCTP, RTCP handling)
    charge their own time; each second is charged once."""
    if getattr(dtls, "_pysfu_receive_metered", False):
        return
    ice = dtls.transport
    recv = ice._recv
    kind: list[str | None] = [None]

    async def recv_noting() -> bytes:
        data: bytes = await recv()
        first = data[0] if data else 0
        if 19 < first < 64:  # RFC 7983: DTLS
            kind[0] = "data"
        elif 127 < first < 192 and len(data) > 1 and 191 < data[1] < 209:
            kind[0] = "rtcp"  # RFC 5761: RTCP packet types 192-208
        else:
            kind[0] = None
        return data

    def reason() -> str | None:
        return kind[0]

    recv_next = dtls._recv_next

    async def recv_next_metered() -> None:
        kind[0] = None
        await metered(cpu_account_of(dtls), reason, recv_next())

    ice._recv = recv_noting
    dtls._recv_next = recv_next_metered  # type: ignore[method-assign]
    dtls._pysfu_receive_metered = True  # type: ignore[attr-defined]
