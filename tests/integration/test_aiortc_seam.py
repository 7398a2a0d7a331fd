"""The aiortc internals pysfu hooks: present now, and loudly missed if they go."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, DataChunk, tsn_plus_one

from pysfu._aiortc import (
    UDP_PAYLOAD_LIMIT,
    AiortcIncompatible,
    RtpOutput,
    RtpTap,
    answer_as_dtls_server,
    check_hook_points,
    configure_ice,
    datagram_endpoint,
    dtls_transport_of,
    limit_sctp_reception,
    negotiated_codecs,
    protect_rtp,
    sender_ssrc_of,
    take_over_receiver,
    take_over_sender,
)
from pysfu.rtp.header import rewrite_header

from ..helpers import LIVENESS, eventually, ice_sockets, udp_backlog


def test_every_hook_point_exists_in_the_installed_aiortc() -> None:
    check_hook_points()


def test_a_missing_hook_point_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_handle_rtcp_packet")
    missing = r"RTCRtpReceiver\._handle_rtcp_packet"
    with pytest.raises(AiortcIncompatible, match=missing):
        check_hook_points()


def test_a_changed_signature_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handle_rtp_data(self: object, data: bytes) -> None: ...

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", handle_rtp_data)
    with pytest.raises(AiortcIncompatible, match="_handle_rtp_data"):
        check_hook_points()


async def test_host_and_announced_addresses_and_lite_in_the_offer() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        configure_ice(
            pc,
            username_fragment="abcd",
            password="0123456789abcdefghijkl",
            host_addresses=["127.0.0.1"],
            announced_address="203.0.113.7",
            lite=True,
        )
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        candidates = [
            line for line in sdp.splitlines() if line.startswith("a=candidate:")
        ]
        assert candidates and all(" 203.0.113.7 " in c for c in candidates)
        assert "a=ice-ufrag:abcd" in sdp and "a=ice-pwd:0123456789abcdefghijkl" in sdp
        assert "a=ice-lite" in sdp
        transport = pc.getTransceivers()[0].receiver.transport.transport
        assert transport._connection.ice_controlling is False
        # the socket is bound where we asked, the address only announced
        protocol = transport._connection._protocols[0]
        assert protocol.transport.get_extra_info("sockname")[0] == "127.0.0.1"
    finally:
        await pc.close()


async def test_invalid_ice_credentials_are_refused() -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    with pytest.raises(ValueError):
        configure_ice(pc, password="short")


async def test_vp9_and_av1_are_offered_for_forwarding() -> None:
    from pysfu import SFU, SFUConfig

    SFU(SFUConfig(passthrough_codecs=("VP9", "AV1")))
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        offer = await pc.createOffer()
        assert "a=rtpmap:103 VP9/90000" in offer.sdp
        assert "a=rtpmap:105 AV1/90000" in offer.sdp
        assert "a=fmtp:104 apt=103" in offer.sdp
        assert offer.sdp.index("VP8/90000") < offer.sdp.index("VP9/90000")
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("actpass", "passive"), ("active", "passive"), ("passive", "active")],
)
async def test_the_answer_makes_pysfu_the_dtls_server_unless_told_otherwise(
    offered: str, answered: str
) -> None:
    client, server = RTCPeerConnection(), RTCPeerConnection()
    try:
        client.addTransceiver("video", direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        offer = client.localDescription.sdp.replace(
            "a=setup:actpass", f"a=setup:{offered}"
        )
        await server.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        answer_as_dtls_server(server)
        await server.setLocalDescription(await server.createAnswer())
        assert f"a=setup:{answered}" in server.localDescription.sdp
        transport = server.getTransceivers()[0].receiver.transport
        assert transport._role == ("server" if answered == "passive" else "client")
    finally:
        await client.close()
        await server.close()


async def _noop_rtcp(_packet: object, _now: float) -> None:
    return None


async def _publishing_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """A server side receiving video from a client side, both taken over."""
    server, client = RTCPeerConnection(), RTCPeerConnection()
    transceiver = server.addTransceiver("video", direction="recvonly")
    take_over_receiver(transceiver.receiver, lambda _p: None, _noop_rtcp)
    configure_ice(server, host_addresses=["127.0.0.1"])
    await server.setLocalDescription(await server.createOffer())
    await client.setRemoteDescription(server.localDescription)
    sending = client.getTransceivers()[0]
    sending.direction = "sendonly"
    take_over_sender(sending.sender)
    configure_ice(client, host_addresses=["127.0.0.1"])
    await client.setLocalDescription(await client.createAnswer())
    await server.setRemoteDescription(client.localDescription)
    await eventually(
        lambda: server.connectionState == "connected" == client.connectionState,
        what="the pair to connect",
    )
    return server, client


@pytest.mark.parametrize("direct", [True, False])
async def test_the_tap_delivers_srtp_and_drops_forged_and_replayed_packets(
    direct: bool,
) -> None:
    server, client = await _publishing_pair()
    try:
        receiving = server.getTransceivers()[0]
        sending = client.getTransceivers()[0]
        server_dtls = dtls_transport_of(receiving)
        tap = RtpTap(server_dtls, direct=direct)
        got: list[tuple[int, bytes]] = []
        tap.attach(receiving.receiver, lambda p, d, _a, _now: got.append((p.ssrc, d)))
        endpoint = datagram_endpoint(server_dtls)
        assert endpoint is not None
        _, protocol, addr = endpoint
        ssrc = sender_ssrc_of(sending.sender)
        pt = negotiated_codecs(receiving)[0].payloadType
        client_dtls = dtls_transport_of(sending)

        def packet(seq: int) -> bytes:
            return struct.pack("!BBHII", 0x80, pt, seq, 1234, ssrc) + b"payload"

        first = protect_rtp(client_dtls, packet(1))
        protocol.datagram_received(first, addr)  # type: ignore[attr-defined]
        if direct:  # delivered within the datagram callback
            assert got == [(ssrc, packet(1))]
        await eventually(lambda: len(got) == 1, what="the packet")
        assert got == [(ssrc, packet(1))]

        forged = bytearray(protect_rtp(client_dtls, packet(2)))
        forged[-1] ^= 1
        protocol.datagram_received(bytes(forged), addr)  # type: ignore[attr-defined]
        protocol.datagram_received(first, addr)  # type: ignore[attr-defined]  # replay
        if direct:  # more than libsrtp's buffer takes, as SRTP and as SRTCP
            # (aiortc's own receive task ends on these, closing the transport)
            for oversized in (b"\x80" + bytes(1600), b"\x80\xc8" + bytes(1600)):
                protocol.datagram_received(oversized, addr)  # type: ignore[attr-defined]
        protocol.datagram_received(  # type: ignore[attr-defined]
            protect_rtp(client_dtls, packet(3)), addr
        )
        await eventually(lambda: len(got) == 2, what="the next good packet")
        assert got[1] == (ssrc, packet(3))
        if direct:
            assert tap.srtp_errors == 4
            assert server_dtls.state == "connected"
    finally:
        await client.close()
        await server.close()


async def test_an_sctp_peer_sending_beyond_the_receive_window_is_cut_off() -> None:
    server, client = RTCPeerConnection(), RTCPeerConnection()
    try:
        server.createDataChannel("chat")
        opened = asyncio.Event()
        client.on("datachannel", lambda _channel: opened.set())
        configure_ice(server, host_addresses=["127.0.0.1"])
        await server.setLocalDescription(await server.createOffer())
        await client.setRemoteDescription(server.localDescription)
        configure_ice(client, host_addresses=["127.0.0.1"])  # now it has an agent
        await client.setLocalDescription(await client.createAnswer())
        await server.setRemoteDescription(client.localDescription)
        await asyncio.wait_for(opened.wait(), LIVENESS)
        assert server.sctp is not None and client.sctp is not None
        violations: list[str] = []
        limit_sctp_reception(server.sctp, violations.append)
        # raw DATA chunks, each opening a message that never ends: a compliant
        # sender stops at the 1 MiB window the server advertised
        server_ports = [
            p.transport.get_extra_info("sockname")[1] for p in ice_sockets(server)
        ]
        tsn = client.sctp._local_tsn
        for stream_seq in range(1000):
            chunk = DataChunk(flags=SCTP_DATA_FIRST_FRAG)
            chunk.tsn, tsn = tsn, tsn_plus_one(tsn)
            chunk.stream_seq = stream_seq
            chunk.protocol = 53  # WebRTC binary
            chunk.user_data = bytes(1200)
            await client.sctp._send_chunk(chunk)
            if stream_seq % 20 == 19:  # let the server read them, however slowly
                await eventually(
                    lambda: udp_backlog(server_ports) == 0, what="the server reading"
                )
        await eventually(lambda: server.sctp.state == "closed", what="the abort")
        assert violations == ["more data than the advertised receive window"]
    finally:
        await client.close()
        await server.close()


async def test_the_output_sends_every_packet_a_udp_datagram_can_carry() -> None:
    """GStreamer's payloaders make 1400-byte packets by default, more than
    1500 bytes minus libsrtp's *maximum* trailer (144): they must go out, as
    must anything up to the UDP limit; only what cannot fit a datagram once
    encrypted is dropped, and counted as too large."""
    server, client = await _publishing_pair()
    try:
        server_dtls = dtls_transport_of(server.getTransceivers()[0])
        endpoint = datagram_endpoint(server_dtls)
        assert endpoint is not None
        _, protocol, _ = endpoint
        arrived: list[bytes] = []
        original = protocol.datagram_received

        def record(data: bytes, addr: tuple[str, int]) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 209:  # SRTP, not SRTCP
                arrived.append(data)  # kept from aiortc, to decrypt here
            else:
                original(data, addr)

        protocol.datagram_received = record  # type: ignore[method-assign]
        output = RtpOutput(dtls_transport_of(client.getTransceivers()[0]))

        def packet(seq: int, size: int) -> bytes:
            header = struct.pack("!BBHII", 0x80, 96, seq, 1234, 5678)
            return header + bytes(i % 251 for i in range(size - len(header)))

        sent = packet(1, 1400)
        assert output.send_rewritten(sent, 100, 7, 8, 9)
        await eventually(lambda: len(arrived) == 1, what="the 1400-byte packet")
        overhead = len(arrived[0]) - 1400
        assert overhead in (10, 16)  # AES-CM/HMAC-SHA1-80 or AEAD AES-GCM
        assert output.max_rtp_size == UDP_PAYLOAD_LIMIT - overhead
        plain = server_dtls._rx_srtp.unprotect(arrived[0])
        assert plain[1] == 100 and struct.unpack("!HII", plain[2:12]) == (7, 8, 9)
        assert plain[12:] == sent[12:]
        # the in-place rewrite and pysfu.rtp's copying one agree byte for byte
        assert plain == rewrite_header(sent, 100, 7, 8, 9)

        assert output.send_rewritten(packet(2, 9000), 100, 8, 8, 9)
        largest = packet(3, output.max_rtp_size)
        assert output.send_rewritten(largest, 100, 9, 8, 9)
        await eventually(lambda: len(arrived) == 3, what="the large packets")
        assert [len(d) for d in arrived[1:]] == [9000 + overhead, UDP_PAYLOAD_LIMIT]
        assert output.dropped == output.too_large == 0

        # one byte more cannot be sent: dropped, and counted as too large
        assert not output.send_rewritten(
            packet(4, output.max_rtp_size + 1), 100, 10, 8, 9
        )
        assert not output.send_rtp(packet(5, UDP_PAYLOAD_LIMIT + 1))
        assert output.dropped == output.too_large == 2
        assert output.send_rtp(packet(6, 1400))  # and the output carries on
        await eventually(lambda: len(arrived) == 4, what="the next packet")
    finally:
        await client.close()
        await server.close()
