"""The aiortc internals pysfu hooks: present now, and loudly missed if they go."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport

from pysfu._aiortc import (
    AiortcIncompatible,
    answer_as_dtls_server,
    check_hook_points,
    configure_ice,
)


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
