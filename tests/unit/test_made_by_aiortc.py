"""Recognising an aiortc client by its SDP (it gets a new section for each
track it receives: see tests/integration/test_reused_transceivers.py)."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from pysfu._aiortc import made_by_aiortc

#: Origin lines as other stacks write them.
OTHERS = {
    "chromium": "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "firefox": "o=mozilla...THIS_IS_SDPARTA-99.0 6190155574 0 IN IP4 0.0.0.0",
    "werift": "o=- 15718299 0 IN IP4 0.0.0.0",
    "webrtcbin": "o=- 8011389916539488093 0 IN IP4 0.0.0.0",
}


def sdp(origin: str) -> str:
    return f"v=0\r\n{origin}\r\ns=-\r\nt=0 0\r\n"


async def test_an_aiortc_offer_is_recognised() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video")
        offer = await pc.createOffer()
        assert made_by_aiortc(offer.sdp)
    finally:
        await pc.close()


def test_an_aiortc_origin_line_is_recognised() -> None:
    origin = "o=- 3974094000 3974094000 IN IP4 0.0.0.0"
    assert made_by_aiortc(sdp(origin))
    assert made_by_aiortc(sdp(origin).replace("\r\n", "\n"))


def test_other_stacks_are_not_taken_for_aiortc() -> None:
    for name, origin in OTHERS.items():
        assert not made_by_aiortc(sdp(origin)), name


def test_an_sdp_without_origin_is_not_aiortc() -> None:
    assert not made_by_aiortc("v=0\r\ns=-\r\n")
    assert not made_by_aiortc(sdp("o=- 39740940 3974094000 IN IP4 0.0.0.0"))
