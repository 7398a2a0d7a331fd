"""The tap's lean RTP header parser, with aiortc's full parser as the oracle."""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysfu._aiortc import extension_checks_of, header_extensions
from pysfu.rtp.extensions import find_extension
from pysfu.rtp.header import RtpHeader, parse_header

from ..integration.test_bad_media import raw_rtp

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
IDS = {MID: 1, AUDIO_LEVEL: 2, ABS_SEND_TIME: 3, RID: 4, TWCC: 5}

SETTINGS = settings(
    max_examples=600,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)


def extensions_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in IDS.items()
            ]
        )
    )
    return extensions


@st.composite
def rtp_with_elements(draw: st.DrawFn) -> bytes:
    """Headers whose extension blocks hold RFC 8285 elements of known and
    unknown ids, of right and wrong lengths, sometimes cut short."""
    one_byte = draw(st.booleans())
    elements = b""
    for _ in range(draw(st.integers(0, 4))):
        ext_id = draw(st.sampled_from([1, 2, 3, 4, 5]) | st.integers(0, 15))
        value = draw(
            st.sampled_from([b"0", b"\xff\xfe", b"abc", b"\x01\x02", b"q"])
            | st.binary(min_size=1, max_size=16 if one_byte else 20)
        )
        if one_byte:
            elements += bytes([(ext_id << 4) | (len(value) - 1)]) + value
        else:
            elements += bytes([ext_id, len(value)]) + value
        elements += bytes(draw(st.integers(0, 2)))  # padding between elements
    elements += bytes(-len(elements) % 4)
    cut = draw(st.integers(0, 3)) if draw(st.booleans()) else 0
    words = len(elements) // 4
    block = (b"\xbe\xde" if one_byte else b"\x10\x00") + struct.pack("!H", words)
    first = 0x90 | (0x20 if draw(st.booleans()) else 0)
    header = bytes([first, draw(st.integers(0, 255))]) + struct.pack(
        "!HII", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1)), 7
    )
    payload = draw(st.binary(max_size=20)) + draw(st.sampled_from([b"", b"\x02"]))
    return header + block + elements[: len(elements) - cut] + payload


def assert_same_as_aiortc(data: bytes) -> None:
    extensions = extensions_map()
    try:
        expected: RtpPacket | None = RtpPacket.parse(data, extensions)
    except (ValueError, struct.error):
        expected = None
    got = parse_header(data, extension_checks_of(extensions))
    if expected is None:
        assert got is None
        return
    assert isinstance(got, RtpHeader)
    assert (got.marker, got.payload_type, got.sequence_number) == (
        expected.marker,
        expected.payload_type,
        expected.sequence_number,
    )
    assert (got.timestamp, got.ssrc) == (expected.timestamp, expected.ssrc)
    assert got.padding_size == expected.padding_size
    assert got.payload == expected.payload
    assert header_extensions(got, extensions) == expected.extensions
    ast = find_extension(data, got, IDS[ABS_SEND_TIME])
    # present iff aiortc saw one (it keeps the last of several, we find the first)
    assert (ast > 0) == (expected.extensions.abs_send_time is not None)


@SETTINGS
@given(raw_rtp())
def test_arbitrary_packets_parse_exactly_as_aiortc_parses_them(data: bytes) -> None:
    assert_same_as_aiortc(data)


@SETTINGS
@given(rtp_with_elements())
def test_extension_elements_are_checked_as_aiortc_checks_them(data: bytes) -> None:
    assert_same_as_aiortc(data)


def test_abs_send_time_is_found_in_both_element_formats() -> None:
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3)
    one = header + b"\xbe\xde\x00\x02" + b"\x10a\x00\x32\x01\x02\x03\x00" + b"p"
    two = header + b"\x10\x00\x00\x02" + b"\x01\x01a\x03\x03\x01\x02\x03" + b"p"
    for data in (one, two):
        parsed = parse_header(data)
        assert parsed is not None
        at = find_extension(data, parsed, 3)
        assert data[at : at + 3] == b"\x01\x02\x03"
        assert find_extension(data, parsed, 9) == -1
