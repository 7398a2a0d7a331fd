"""Per-subscriber rewriting through a real Forwarder and DownTrack.

The transports are replaced by recorders of the bytes that would be
encrypted and sent: what is checked here is the stream a subscriber sees.
"""

from __future__ import annotations

import itertools
import logging

import pytest
from aiortc.rtp import RtcpPacket, RtpPacket

from pysfu import CodecInfo, DownTrack, Forwarder
from pysfu.rtp.header import rewrite_header
from pysfu.stats import SubscriptionStats

from ..helpers import ManualTimers

VP8 = CodecInfo(payload_type=96, mime_type="video/VP8", clock_rate=90000)
RTX = CodecInfo(97, "video/rtx", 90000, parameters={"apt": 96})
OPUS = CodecInfo(111, "audio/opus", 48000, channels=2)
VP8_KEYFRAME = b"\x10\x00\x9d\x01\x2a"  # S=1, PID=0, P=0
VP8_DELTA = b"\x10\x01"


class Recorder:
    def __init__(self) -> None:
        self.rtp: list[RtpPacket] = []
        self.rtcp: list[object] = []

    def send_rtp(self, data: bytes | bytearray) -> bool:
        self.rtp.append(RtpPacket.parse(bytes(data)))
        return True

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.extend(RtcpPacket.parse(data))
        return True


def feed(
    forwarder: Forwarder, ssrc: int, seq: int, ts: int, payload: bytes, pt: int = 96
) -> None:
    packet = RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
    )
    packet.payload = payload
    data = packet.serialize()
    forwarder.on_rtp(RtpPacket.parse(data), data, 0, forwarder.clock())


def make(
    kind: str, codecs: list[CodecInfo]
) -> tuple[Forwarder, DownTrack, Recorder, Recorder]:
    upstream, downstream = Recorder(), Recorder()
    timers = ManualTimers()
    forwarder = Forwarder(
        track_id="p/" + kind,
        kind=kind,
        publisher_id="p",
        upstream=upstream,
        rtcp_ssrc=1,
        # time stands still unless a test moves it: no event loop needed
        clock=timers,
        call_at=timers.call_at,
    )
    forwarder.set_codecs(codecs, {})
    downtrack = DownTrack(forwarder, downstream, ssrc=0xABCD, subscriber_id="s")
    forwarder.add_downtrack(downtrack)
    return forwarder, downtrack, upstream, downstream


def assert_continuous(packets: list[RtpPacket]) -> None:
    for before, after in itertools.pairwise(packets):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
        assert 0 <= (after.timestamp - before.timestamp) & 0xFFFFFFFF < 0x80000000
    assert {p.ssrc for p in packets} == {0xABCD}


def test_stream_stays_continuous_across_a_source_change() -> None:
    forwarder, downtrack, _, out = make("audio", [OPUS])
    downtrack.configure({111: 100}, None, 48000)
    for i in range(10):
        feed(forwarder, 0x1111, 65530 + i, 1000 + 960 * i, b"a", pt=111)
    # the publisher reconnects: new SSRC, new random sequence and timestamp
    for i in range(10):
        feed(forwarder, 0x2222, 300 + i, 5 + 960 * i, b"b", pt=111)
    assert len(out.rtp) == 20
    assert_continuous(out.rtp)
    assert {p.payload_type for p in out.rtp} == {100}
    assert out.rtp[10].timestamp != out.rtp[9].timestamp


def test_video_starts_on_a_keyframe_and_asks_for_one() -> None:
    forwarder, downtrack, upstream, out = make("video", [VP8, RTX])
    feed(forwarder, 0x1111, 1, 0, VP8_DELTA)  # the forwarder learns the SSRC
    downtrack.configure({96: 98}, None, 90000)  # the subscriber is ready
    for i in range(2, 6):
        feed(forwarder, 0x1111, i, 3000 * i, VP8_DELTA)
    assert out.rtp == []
    assert [p.fmt for p in upstream.rtcp if type(p).__name__ == "RtcpPsfbPacket"] == [1]
    feed(forwarder, 0x1111, 6, 18000, VP8_KEYFRAME)
    feed(forwarder, 0x1111, 7, 21000, VP8_DELTA)
    assert [p.payload for p in out.rtp] == [VP8_KEYFRAME, VP8_DELTA]
    assert_continuous(out.rtp)


def test_a_new_video_source_that_starts_on_a_keyframe_goes_on_at_once() -> None:
    forwarder, downtrack, _, out = make("video", [VP8, RTX])
    downtrack.configure({96: 98}, None, 90000)
    feed(forwarder, 0x1111, 1, 0, VP8_KEYFRAME)
    feed(forwarder, 0x1111, 2, 3000, VP8_DELTA)
    asked = forwarder.keyframes.sent  # the subscriber's start asked for one
    # the publisher's encoder restarts: a new SSRC, then a jump in the same
    # SSRC (e.g. a replaced track), each starting on a keyframe
    feed(forwarder, 0x2222, 500, 7, VP8_KEYFRAME)
    feed(forwarder, 0x2222, 501, 3007, VP8_DELTA)
    feed(forwarder, 0x2222, 20000, 6007, VP8_KEYFRAME)
    feed(forwarder, 0x2222, 20001, 9007, VP8_DELTA)
    assert [p.payload for p in out.rtp] == [VP8_KEYFRAME, VP8_DELTA] * 3
    assert_continuous(out.rtp)
    assert forwarder.keyframes.sent == asked  # nothing more asked of the publisher


def test_retransmissions_are_unwrapped_and_forwarded_in_place() -> None:
    forwarder, downtrack, upstream, out = make("video", [VP8, RTX])
    downtrack.configure({96: 98}, None, 90000)
    feed(forwarder, 0x1111, 10, 0, VP8_KEYFRAME)
    feed(forwarder, 0x1111, 12, 3000, VP8_DELTA)  # 11 is lost upstream
    nacks = [p for p in upstream.rtcp if type(p).__name__ == "RtcpRtpfbPacket"]
    assert nacks and nacks[-1].lost == [11]
    # the publisher retransmits 11 over RTX: OSN first, then the payload
    feed(forwarder, 0x9999, 500, 3000, (11).to_bytes(2, "big") + b"\x00late", pt=97)
    assert [p.payload for p in out.rtp] == [VP8_KEYFRAME, VP8_DELTA, b"\x00late"]
    first = out.rtp[0].sequence_number
    assert [p.sequence_number for p in out.rtp] == [first, first + 2, first + 1]
    assert {p.ssrc for p in out.rtp} == {0xABCD}


async def test_a_subscriber_nack_is_answered_from_history() -> None:
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    forwarder, downtrack, upstream, out = make("video", [VP8, RTX])
    downtrack.configure({96: 98}, None, 90000)
    feed(forwarder, 0x1111, 10, 0, VP8_KEYFRAME)
    feed(forwarder, 0x1111, 11, 3000, VP8_DELTA)
    lost = out.rtp[1].sequence_number
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=5, media_ssrc=0xABCD)
    nack.lost = [lost]
    upstream_before = len(upstream.rtcp)
    await downtrack.on_rtcp(nack, forwarder.clock())
    assert len(out.rtp) == 3
    assert (out.rtp[2].sequence_number, out.rtp[2].payload) == (lost, VP8_DELTA)
    assert out.rtp[2].timestamp == out.rtp[1].timestamp
    assert len(upstream.rtcp) == upstream_before  # not forwarded to the publisher
    assert downtrack.stats.retransmitted == 1


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    forwarder, healthy, _, out = make("audio", [OPUS])
    healthy.configure({111: 111}, None, 48000)

    class Broken:
        def send_rtp(self, data: bytes | bytearray) -> bool:
            raise ConnectionError("gone")

        def send_rtcp(self, data: bytes) -> bool:
            raise ConnectionError("gone")

    broken = DownTrack(forwarder, Broken(), ssrc=7, subscriber_id="x")
    forwarder.downtracks.insert(0, broken)
    broken.configure({111: 111}, None, 48000)
    for i in range(5):
        feed(forwarder, 0x1111, i, 960 * i, b"a", pt=111)
    assert len(out.rtp) == 5
    assert broken.stats.errors == 5


def test_a_reused_sender_continues_the_previous_numbering() -> None:
    first_forwarder, first, _, out = make("audio", [OPUS])
    first.configure({111: 111}, None, 48000)
    for i in range(5):
        feed(first_forwarder, 0x1111, 100 + i, 960 * i, b"a", pt=111)
    first.close()  # that participant left; the transceiver is reused
    second_forwarder, _, _, _ = make("audio", [OPUS])
    second = DownTrack(
        second_forwarder, out, ssrc=0xABCD, subscriber_id="s", resume=first.position()
    )
    second_forwarder.add_downtrack(second)
    second.configure({111: 111}, None, 48000)
    for i in range(5):
        feed(second_forwarder, 0x2222, 40000 + i, 7 + 960 * i, b"b", pt=111)
    assert len(out.rtp) == 10
    assert_continuous(out.rtp)  # one SSRC, one stream: no jump back or forward


def test_a_keyframe_asked_for_before_any_packet_is_sent_with_the_first() -> None:
    forwarder, downtrack, upstream, _ = make("video", [VP8, RTX])
    downtrack.configure({96: 98}, None, 90000)  # ready before the publisher sent
    assert upstream.rtcp == [] and forwarder.keyframes.sent == 0
    feed(forwarder, 0x1111, 1, 0, VP8_DELTA)
    plis = [p for p in upstream.rtcp if type(p).__name__ == "RtcpPsfbPacket"]
    assert [p.media_ssrc for p in plis] == [0x1111]
    assert forwarder.keyframes.sent == 1


def test_a_packet_too_large_to_send_is_counted_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What cannot fit a datagram is dropped under its own reason, and the
    log says so once per track, not once per packet."""
    forwarder, _, _, out = make("audio", [OPUS])

    class SmallDatagrams(Recorder):
        max_rtp_size = 1000

        def send_rewritten(
            self, data: bytes | bytearray, pt: int, seq: int, ts: int, ssrc: int
        ) -> bool:
            if len(data) > self.max_rtp_size:
                return False
            return self.send_rtp(rewrite_header(data, pt, seq, ts, ssrc))

    small = SmallDatagrams()
    downtrack = DownTrack(forwarder, small, ssrc=7, subscriber_id="small")
    forwarder.add_downtrack(downtrack)
    for track in forwarder.downtracks:
        track.configure({111: 111}, None, 48000)
    with caplog.at_level(logging.WARNING, logger="pysfu"):
        for i in range(6):
            feed(forwarder, 0x1111, i, 960 * i, b"a" * (1400 if i % 2 else 100), 111)
    assert len(out.rtp) == 6  # the other subscriber gets everything
    assert len(small.rtp) == 3
    assert downtrack.stats.dropped == downtrack.stats.dropped_too_large == 3
    warnings = [r for r in caplog.records if "cannot be forwarded" in r.message]
    assert len(warnings) == 1 and "p/audio" in warnings[0].message
    assert SubscriptionStats.of(downtrack).packets_dropped_too_large == 3
