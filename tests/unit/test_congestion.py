"""Congestion control in a forwarded track: the REMB the publisher is sent
follows its subscribers, and NACKs are answered within bounds.

Time is passed in where the code takes it (policy, limiter); where a real
Forwarder and DownTrack are driven, only orderings matter, never durations.
"""

from __future__ import annotations

import itertools

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from pysfu.forwarding.congestion import SlowestSubscriber, UplinkOnly, simulcast_target
from pysfu.forwarding.forwarder import (
    ABS_SEND_TIME_URI,
    REMB_REPEAT_INTERVAL,
    REMB_START_INTERVAL,
)
from pysfu.forwarding.retransmit import (
    OVER_BUDGET,
    TOO_SOON,
    RetransmitLimiter,
    RetransmitPolicy,
)

from ..helpers import ManualTimers
from .test_rewrite import OPUS, RTX, VP8, VP8_DELTA, VP8_KEYFRAME, feed, make

# -- the policy ----------------------------------------------------------


def test_the_slowest_subscriber_sets_the_rate() -> None:
    policy = SlowestSubscriber(floor=100_000)
    assert policy.combine(2_000_000, 2_500_000, [400_000, 1_800_000]) == 400_000
    # the uplink or the cap may be lower than every subscriber
    assert policy.combine(300_000, 2_500_000, [400_000]) == 300_000
    assert policy.combine(3_000_000, 2_500_000, [2_800_000]) == 2_500_000
    # no subscriber estimate yet: the uplink estimate alone, capped
    assert policy.combine(900_000, 2_500_000, []) == 900_000


def test_the_floor_holds_unless_the_cap_is_lower() -> None:
    policy = SlowestSubscriber(floor=100_000)
    assert policy.combine(2_000_000, None, [20_000]) == 100_000
    assert policy.combine(2_000_000, 50_000, [20_000]) == 50_000


def test_before_anything_is_measured_the_publisher_starts_at_the_cap() -> None:
    # Chromium takes a REMB in its first 2 s as its target: said nothing, it
    # stayed at its 300 kbit/s start and at 180p for good (issue 14)
    assert SlowestSubscriber().combine(None, 2_500_000, []) == 2_500_000
    assert SlowestSubscriber().combine(None, None, []) is None  # no cap: nothing
    assert SlowestSubscriber(start_at_cap=False).combine(None, 2_500_000, []) is None
    # a subscriber's estimate alone is enough (publisher without abs-send-time)
    assert SlowestSubscriber().combine(None, 2_500_000, [600_000]) == 600_000


def test_uplink_only_ignores_subscribers() -> None:
    assert UplinkOnly().combine(2_000_000, 2_500_000, [300_000]) == 2_000_000
    assert UplinkOnly().combine(None, 2_500_000, [300_000]) is None


# -- the forwarder applies it ----------------------------------------------


def remb_to(bitrate: int, ssrc: int) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=5, media_ssrc=0, fci=pack_remb_fci(bitrate, [ssrc])
    )


def rembs_sent(upstream: object) -> list[int]:
    return [
        unpack_remb_fci(p.fci)[0]
        for p in upstream.rtcp  # type: ignore[attr-defined]
        if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP
    ]


async def test_a_subscriber_remb_lowers_the_publisher_remb() -> None:
    forwarder, downtrack, upstream, _ = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    feed(forwarder, 0x1111, 1, 0, VP8_KEYFRAME)
    await downtrack.on_rtcp(remb_to(450_000, downtrack.ssrc), forwarder.clock())
    assert rembs_sent(upstream)[-1] == 450_000
    assert forwarder.stats.remb_bitrate == 450_000
    # an estimate for another stream of that subscriber is not this one's
    await downtrack.on_rtcp(remb_to(200_000, 0x999), forwarder.clock())
    assert rembs_sent(upstream)[-1] == 450_000


def test_a_stale_subscriber_estimate_is_ignored() -> None:
    forwarder, downtrack, _, _ = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    downtrack.on_estimate(300_000, now=100.0)
    assert forwarder.subscriber_estimates(now=101.0) == [300_000]
    stale = 100.0 + forwarder.config.remb_stale_after + 0.1
    assert forwarder.subscriber_estimates(now=stale) == []
    # nothing else measured: back to the start value
    assert forwarder.target_bitrate(now=stale) == forwarder.config.max_video_bitrate


def test_a_departed_subscriber_no_longer_counts() -> None:
    forwarder, downtrack, _, _ = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    downtrack.on_estimate(300_000, now=100.0)
    downtrack.close()
    assert forwarder.subscriber_estimates(now=100.5) == []


# -- NACK limiter -----------------------------------------------------------


def test_a_packet_is_resent_at_most_once_per_round_trip() -> None:
    limiter = RetransmitLimiter(RetransmitPolicy(min_budget=10_000_000))
    assert limiter.check(7, 1200, now=10.0, round_trip_time=0.2) is None
    assert limiter.check(7, 1200, now=10.1, round_trip_time=0.2) == TOO_SOON
    assert limiter.check(8, 1200, now=10.1, round_trip_time=0.2) is None
    assert limiter.check(7, 1200, now=10.25, round_trip_time=0.2) is None


def test_without_a_round_trip_the_default_interval_applies() -> None:
    limiter = RetransmitLimiter(RetransmitPolicy(min_budget=10_000_000))
    assert limiter.check(7, 1200, now=10.0, round_trip_time=None) is None
    assert limiter.check(7, 1200, now=10.05, round_trip_time=None) == TOO_SOON
    assert limiter.check(7, 1200, now=10.15, round_trip_time=None) is None


def test_retransmissions_share_a_budget_that_follows_the_send_rate() -> None:
    policy = RetransmitPolicy(budget_share=0.1, min_budget=8_000, burst=1.0)
    limiter = RetransmitLimiter(policy)
    limiter.update_send_rate(0, now=0.0)
    # 1 Mbit/s sent: 10 % of it is 12,500 bytes per second of retransmission
    limiter.update_send_rate(125_000, now=1.0)
    sent = [
        seq
        for seq in range(100)
        if limiter.check(seq, 1000, now=10.0, round_trip_time=None) is None
    ]
    assert 5 <= len(sent) <= 13  # what the bucket held, not all 100
    assert limiter.check(500, 1000, now=10.0, round_trip_time=None) == OVER_BUDGET
    # the budget refills with time
    assert limiter.check(501, 1000, now=10.5, round_trip_time=None) is None


async def test_refused_retransmissions_are_counted_by_reason() -> None:
    forwarder, downtrack, _, downstream = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    feed(forwarder, 0x1111, 10, 0, VP8_KEYFRAME)
    feed(forwarder, 0x1111, 11, 0, VP8_DELTA)
    wanted = downstream.rtp[-1].sequence_number
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=5, media_ssrc=downtrack.ssrc)
    nack.lost = [wanted, wanted, (wanted + 1000) & 0xFFFF]
    sent_before = len(downstream.rtp)
    await downtrack.on_rtcp(nack, forwarder.clock())
    assert len(downstream.rtp) == sent_before + 1  # once, not twice
    refused = downtrack.stats.retransmissions_refused
    assert refused == {"too_soon": 1, "not_in_history": 1}
    assert downtrack.stats.retransmitted == 1


# -- abs-send-time, stamped at send ----------------------------------------


def test_abs_send_time_is_stamped_when_pysfu_sends() -> None:
    forwarder, downtrack, _, downstream = make("video", [VP8, RTX])
    forwarder.set_codecs([VP8, RTX], {ABS_SEND_TIME_URI: 3})
    downtrack.configure({96: 96}, None, 90000)
    raw: list[bytes] = []
    downstream.send_rtp = lambda data: raw.append(bytes(data)) or True  # type: ignore[method-assign]
    extensions = abs_send_time_map()
    publisher_stamp = 0x123456  # the publisher's clock: unrelated to ours
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=0x1111)
    packet.extensions.abs_send_time = publisher_stamp
    packet.payload = VP8_KEYFRAME
    data = packet.serialize(extensions)
    now = forwarder.clock() + 0.5  # sent half a second after make()
    forwarder.on_rtp(RtpPacket.parse(data, extensions), data, 0, now)
    sent = RtpPacket.parse(raw[-1], extensions)
    stamp = sent.extensions.abs_send_time
    assert stamp != publisher_stamp
    assert stamp == int(now * 262144) & 0xFFFFFF  # the "now" it was sent at


# -- NACKs toward the publisher ----------------------------------------------


def test_the_publisher_is_not_asked_again_and_again_for_one_packet() -> None:
    forwarder, downtrack, upstream, _ = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    feed(forwarder, 0x1111, 1, 0, VP8_KEYFRAME)
    # a lossy uplink: every third packet lost, 60 packets in quick succession
    for seq in range(2, 120):
        if seq % 3:
            feed(forwarder, 0x1111, seq, 3000 * (seq // 3), VP8_DELTA)
    nacks = [p for p in upstream.rtcp if isinstance(p, RtcpRtpfbPacket)]
    asked = [seq for p in nacks for seq in p.lost]
    lost = {seq for seq in range(2, 120) if seq % 3 == 0} - {119}
    assert set(asked) >= lost - {max(lost)}
    # each lost packet asked for once (this all took far less than the
    # repeat interval), not once per later gap as aiortc's generator reports
    assert len(asked) == len(set(asked))
    assert forwarder.stats.nacked_packets == len(asked)


async def test_retransmissions_over_the_budget_are_paced_not_dropped() -> None:
    forwarder, downtrack, _, downstream = make("video", [VP8, RTX])
    downtrack.configure({96: 96}, None, 90000)
    feed(forwarder, 0x1111, 10, 0, VP8_KEYFRAME + b"k" * 1000)
    for seq in range(11, 40):
        feed(forwarder, 0x1111, seq, 0, VP8_DELTA + b"d" * 1000)
    first = downstream.rtp[0].sequence_number
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=5, media_ssrc=downtrack.ssrc)
    nack.lost = [(first + i) & 0xFFFF for i in range(30)]  # ~31 kB at once
    sent_before = len(downstream.rtp)
    timers = forwarder.clock  # make()'s ManualTimers: time moves when told
    assert isinstance(timers, ManualTimers)
    await downtrack.on_rtcp(nack, timers())
    at_once = len(downstream.rtp) - sent_before
    assert 0 < at_once < 30  # the budget (64 kbit/s for 1 s: 8 kB) holds the rest
    assert downtrack.stats.retransmissions_paced == 30 - at_once
    # ... which follows as the budget refills, none refused
    for _ in range(100):
        if len(downstream.rtp) - sent_before == 30:
            break
        timers.advance(0.25)
    assert len(downstream.rtp) - sent_before == 30
    assert downtrack.stats.retransmissions_refused == {}
    resent = [p.sequence_number for p in downstream.rtp[sent_before:]]
    assert resent == nack.lost


async def test_an_estimate_listing_an_audio_stream_sends_no_remb_for_audio() -> None:
    forwarder, downtrack, upstream, _ = make("audio", [OPUS])
    downtrack.configure({111: 111}, None, 48000)
    feed(forwarder, 0x2222, 1, 0, b"a", pt=111)
    await downtrack.on_rtcp(remb_to(300_000, downtrack.ssrc), forwarder.clock())
    assert rembs_sent(upstream) == []


def test_a_simulcast_publisher_is_told_the_cap_not_the_uplink_estimate() -> None:
    assert simulcast_target(150_000, 2_500_000) == 2_500_000
    assert simulcast_target(None, 2_500_000) == 2_500_000
    assert simulcast_target(150_000, None) is None


# -- the uplink estimate's REMBs ----------------------------------------------


def abs_send_time_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        type(
            "Parameters",
            (),
            {
                "headerExtensions": [
                    RTCRtpHeaderExtensionParameters(3, ABS_SEND_TIME_URI)
                ]
            },
        )()
    )
    return extensions


def test_a_new_publisher_is_told_the_cap_until_its_uplink_is_measured() -> None:
    """The first ~3 s of video give aiortc's estimator no estimate; the
    publisher hears the cap meanwhile (repeated: Chromium acts on it only in
    the 2 s after its first receiver report), then the estimate."""
    forwarder, _, upstream, _ = make("video", [VP8, RTX])
    forwarder.set_codecs([VP8, RTX], {ABS_SEND_TIME_URI: 3})
    extensions = abs_send_time_map()
    cap = forwarder.config.max_video_bitrate
    assert cap is not None
    sent: list[tuple[float, int]] = []
    seq = 0
    for frame in range(180):  # 6 s at 30 frames a second, a steady link
        at = frame / 30
        for i in range(3):
            packet = RtpPacket(
                payload_type=96, sequence_number=seq, timestamp=frame * 3000, ssrc=7
            )
            packet.extensions.abs_send_time = int(at * 262144) & 0xFFFFFF
            packet.payload = (VP8_KEYFRAME if frame == 0 else VP8_DELTA) + bytes(1000)
            data = packet.serialize(extensions)
            now = 100.0 + at + i * 0.001
            before = len(rembs_sent(upstream))
            forwarder.on_rtp(
                RtpPacket.parse(data, extensions), data, int(now * 1000), now
            )
            if len(rembs_sent(upstream)) != before:
                sent.append((now - 100.0, rembs_sent(upstream)[-1]))
            seq += 1
    assert forwarder.stats.uplink_estimate is not None
    starts = [(at, bitrate) for at, bitrate in sent if bitrate == cap]
    # the cap from the first packet on, not one REMB per packet
    assert starts[0][0] == 0.0
    assert 3 <= len(starts) <= 3.5 / REMB_START_INTERVAL
    for (at, _), (next_at, _) in itertools.pairwise(starts):
        assert next_at - at >= REMB_START_INTERVAL
    # then the measured estimate (~720 kbit/s sent here), and no more cap
    measured = [at for at, bitrate in sent if bitrate < cap]
    assert measured and measured[0] > starts[-1][0]
    assert all(bitrate < cap for at, bitrate in sent if at >= measured[0])


def test_a_connected_publisher_hears_the_cap_before_its_first_frame() -> None:
    """Chromium picks its first resolution from the bitrate it has for its
    first frames; a REMB after the first video packet came too late."""
    forwarder, _, upstream, _ = make("video", [VP8, RTX])
    forwarder.set_codecs([VP8, RTX], {ABS_SEND_TIME_URI: 3}, ssrcs={0x1111, 0x2222})
    forwarder.on_connected(now=5.0)
    (remb,) = [p for p in upstream.rtcp if isinstance(p, RtcpPsfbPacket)]
    bitrate, ssrcs = unpack_remb_fci(remb.fci)
    assert bitrate == forwarder.config.max_video_bitrate
    assert sorted(ssrcs) == [0x1111, 0x2222]  # the SDP's: no packet yet
    # an audio track has no REMB to send
    audio, _, audio_upstream, _ = make("audio", [OPUS])
    audio.set_codecs([OPUS], {}, ssrcs={0x3333})
    audio.on_connected(now=5.0)
    assert audio_upstream.rtcp == []


def test_a_reconnected_publisher_keeps_its_measured_estimate() -> None:
    forwarder, _, upstream, _ = make("video", [VP8, RTX])
    forwarder.set_codecs([VP8, RTX], {}, ssrcs={0x1111})
    forwarder.stats.uplink_estimate = 800_000  # measured before an ICE restart
    forwarder.on_connected(now=5.0)
    assert rembs_sent(upstream) == []


def test_an_overused_uplink_does_not_get_a_remb_per_packet() -> None:
    """While the uplink estimator sees over-use, aiortc's estimator returns an
    estimate for every packet: a REMB repeating the standing value goes out
    at most every REMB_REPEAT_INTERVAL, a changed one at once."""
    forwarder, _, _, _ = make("video", [VP8, RTX])
    forwarder.set_codecs([VP8, RTX], {ABS_SEND_TIME_URI: 3})
    extensions = abs_send_time_map()
    sent: list[tuple[float, int | None]] = []
    seq = 0
    for frame in range(150):
        send_time = frame / 30  # the publisher sends 30 frames a second
        arrival = send_time * 1.5  # and they arrive ever later: a queue grows
        for i in range(5):
            packet = RtpPacket(
                payload_type=96, sequence_number=seq, timestamp=frame * 3000, ssrc=7
            )
            packet.extensions.abs_send_time = int(send_time * 262144) & 0xFFFFFF
            packet.payload = VP8_KEYFRAME if frame == 0 else VP8_DELTA
            packet.payload += bytes(1000)
            data = packet.serialize(extensions)
            now = 100.0 + arrival + i * 0.0005
            before = forwarder.stats.remb_sent
            forwarder.on_rtp(
                RtpPacket.parse(data, extensions), data, int(now * 1000), now
            )
            if forwarder.stats.remb_sent != before:
                sent.append((now, forwarder.stats.remb_bitrate))
            seq += 1
    # about one REMB per REMB_REPEAT_INTERVAL of the 7.5 s (before: 660)
    assert 5 <= len(sent) < 100
    for (at, bitrate), (next_at, next_bitrate) in itertools.pairwise(sent):
        if next_bitrate == bitrate:
            assert next_at - at >= REMB_REPEAT_INTERVAL
