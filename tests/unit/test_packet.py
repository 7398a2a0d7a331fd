"""Byte-level RTP helpers, checked against aiortc's own parser and encoders."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from pysfu.rtp.extensions import (
    block_start,
    extension_id_table,
    remap_extension_ids,
    rewrite_extensions,
    stamp_abs_send_time,
    walk,
)
from pysfu.rtp.header import payload_offset, rewrite_header
from pysfu.rtp.keyframes import h264_starts_keyframe, vp8_starts_keyframe

from ..peers import draw_pattern

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AST = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def extension_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()
            ]
        )
    )
    return extensions


def make_packet(ids: dict[str, int]) -> bytes:
    packet = RtpPacket(payload_type=96, sequence_number=65535, timestamp=123, ssrc=42)
    packet.marker = 1
    packet.payload = b"\x10payload"
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    return packet.serialize(extension_map(ids))


def test_rewrite_header_changes_only_the_rewritten_fields() -> None:
    data = make_packet({MID: 1, AST: 3})
    out = rewrite_header(data, 100, 7, 0xFFFFFFFF, 0xDEADBEEF)
    parsed = RtpPacket.parse(bytes(out), extension_map({MID: 1, AST: 3}))
    assert (parsed.payload_type, parsed.sequence_number) == (100, 7)
    assert (parsed.timestamp, parsed.ssrc, parsed.marker) == (0xFFFFFFFF, 0xDEADBEEF, 1)
    assert parsed.payload == b"\x10payload"
    assert parsed.extensions.abs_send_time == 0x123456
    assert data[1] & 0x7F == 96  # the publisher's bytes are untouched


def test_extensions_are_renumbered_and_mid_is_dropped() -> None:
    data = make_packet({MID: 1, AST: 3})
    table = extension_id_table({MID: 1, AST: 3}, {MID: 4, AST: 2}, {AST})
    assert table is not None
    buf = bytearray(data)
    remap_extension_ids(buf, table)
    parsed = RtpPacket.parse(bytes(buf), extension_map({MID: 4, AST: 2}))
    assert parsed.extensions.abs_send_time == 0x123456
    assert parsed.extensions.mid is None  # turned into padding
    assert parsed.payload == b"\x10payload"
    assert len(buf) == len(data)


# the two-byte element form (RFC 8285 4.3), by hand: aiortc writes only one-byte
TWO_BYTE = (
    bytes.fromhex("9060ffff0000007b0000002a")  # X, PT 96, seq 65535, ts 123, ssrc 42
    + b"\x10\x00\x00\x03"  # profile 0x1000, 3 words
    + b"\x01\x010"  # mid (id 1): "0"
    + b"\x00"  # padding
    + b"\xc8\x03\x12\x34\x56"  # abs-send-time (id 200)
    + b"\x00\x00\x00"
    + b"\x10payload"
)


@pytest.mark.parametrize("form", ["one-byte", "two-byte"])
def test_one_walk_renumbers_and_stamps_as_the_two_steps_do(form: str) -> None:
    """rewrite_extensions (the forwarding path, one walk) against
    remap_extension_ids then stamp_abs_send_time, in both element forms."""
    if form == "one-byte":
        ids, target = {MID: 1, AST: 3}, {MID: 4, AST: 2}
        data = make_packet(ids)
    else:
        ids, target = {MID: 1, AST: 200}, {MID: 4, AST: 2}
        data = TWO_BYTE
    table = extension_id_table(ids, target, {AST})
    for now in (0.0, 12.345, 100000.5):
        for used in (table, None):
            ast_id = target[AST] if used is not None else ids[AST]
            two_steps = bytearray(data)
            if used is not None:
                remap_extension_ids(two_steps, used)
            stamp_abs_send_time(two_steps, ast_id, now)
            one_walk = bytearray(data)
            rewrite_extensions(one_walk, used, ast_id, now)
            assert one_walk == two_steps
            parsed = RtpPacket.parse(
                bytes(one_walk), extension_map(target if used is not None else ids)
            )
            assert parsed.extensions.abs_send_time == int(now * 262144) & 0xFFFFFF


def test_identical_numbering_needs_no_table() -> None:
    assert extension_id_table({AST: 3}, {AST: 3}, {AST}) is None
    assert extension_id_table({AST: 3, MID: 1}, {AST: 3, MID: 1}, {AST}) is not None


def test_payload_offset_skips_extensions() -> None:
    data = make_packet({MID: 1, AST: 3})
    assert data[payload_offset(data) :] == b"\x10payload"


def encoded_payloads(encoder: object) -> tuple[list[bytes], list[bytes]]:
    """Payloads of a keyframe and of the delta frame after it, from a real encoder."""
    frames = []
    for i in range(2):
        frame = av.VideoFrame.from_ndarray(draw_pattern(1, i), format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        frames.append(encoder.encode(frame, force_keyframe=(i == 0))[0])  # type: ignore[attr-defined]
    return frames[0], frames[1]


@pytest.mark.parametrize(
    ("encoder", "detect"),
    [(Vp8Encoder, vp8_starts_keyframe), (H264Encoder, h264_starts_keyframe)],
)
def test_keyframe_start_is_detected_on_real_encoder_output(encoder, detect) -> None:  # type: ignore[no-untyped-def]
    keyframe, delta = encoded_payloads(encoder())
    assert detect(keyframe[0])
    assert not any(detect(p) for p in keyframe[1:])
    assert not any(detect(p) for p in delta)


def test_keyframe_detectors_reject_truncated_payloads() -> None:
    for payload in (b"", b"\x90", b"\x90\x80", b"\x7c"):
        assert not vp8_starts_keyframe(payload)
        assert not h264_starts_keyframe(payload[:1] if payload else b"")


# one-byte form: mid (id 1), an id 15 element, then abs-send-time (id 3), which
# renumbering must leave alone (RFC 8285 readers stop at id 15)
PAST_15 = (
    b"\x90\x60\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"
    + b"\xbe\xde\x00\x03"
    + b"\x10\x30"  # mid "0"
    + b"\xf0\x00"  # id 15
    + b"\x32\x12\x34\x56"  # abs-send-time
    + b"\x00\x00\x00\x00"  # padding
    + b"payload"
)


@pytest.mark.parametrize("form", ["one-byte", "two-byte", "past-15"])
def test_the_parsed_elements_give_what_a_fresh_walk_gives(form: str) -> None:
    """rewrite_extensions with the elements the tap parsed (walked reading on
    past an id 15) writes exactly what it writes when it walks the block."""
    data = {
        "one-byte": make_packet({MID: 1, AST: 3}),
        "two-byte": TWO_BYTE,
        "past-15": PAST_15,
    }[form]
    ast_id = 200 if form == "two-byte" else 3
    table = extension_id_table({MID: 1, AST: ast_id}, {MID: 4, AST: 2}, {AST})
    parsed = walk(data, block_start(data), True)
    assert parsed
    for used, stamped in ((table, 2), (None, ast_id)):
        walked, given = bytearray(data), bytearray(data)
        rewrite_extensions(walked, used, stamped, 12.5)
        rewrite_extensions(given, used, stamped, 12.5, list(parsed))
        assert given == walked
        if used is not None or form != "past-15":  # else: all after id 15
            assert given != data  # something was rewritten (or stamped)
