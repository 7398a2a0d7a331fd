"""Simulcast: layer selection (time passed in), VP8 renumbering, the offer's
simulcast lines, and a real Forwarder fed three rid-tagged layers.

The Chromium end-to-end test is tests/interop/browser/test_browser_simulcast.py.
"""

from __future__ import annotations

import itertools

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtpPacket

from pysfu import CodecInfo, DownTrack, Forwarder, ForwardingConfig
from pysfu._aiortc import answer_simulcast, offer_simulcast, simulcast_rids_answered
from pysfu.forwarding.simulcast import LayerSelector, SimulcastPolicy, Vp8Renumbering
from pysfu.messages import VideoQuality, parse_client_message
from pysfu.stats import PublishedTrackStats, SubscriptionStats

from ..helpers import ManualTimers

RATES = [150_000, 500_000, 1_500_000]  # q, h, f as measured
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
RID_ID, RRID_ID = 10, 11
VP8 = CodecInfo(payload_type=96, mime_type="video/VP8", clock_rate=90000)
RTX = CodecInfo(97, "video/rtx", 90000, parameters={"apt": 96})
SSRCS = {"q": 0x1000, "h": 0x2000, "f": 0x3000}
#: The rules without the start-up grace and the climbs (tested on their own)
BASE = {"start_grace": 0.0, "climb_after": 3600.0}


# ---------------------------------------------------------------------------
# layer selection


def test_without_an_estimate_the_top_available_layer_is_chosen() -> None:
    selector = LayerSelector()
    selector.choose(None, [150_000, 500_000, None], 0.0)
    assert selector.target == 1  # f is not being received


def test_a_lower_estimate_moves_down_at_once() -> None:
    selector = LayerSelector()
    assert selector.target == 2
    assert selector.choose(400_000, RATES, 0.0)
    assert selector.target == 0  # h needs 500k > 0.85 * 400k


def test_a_higher_estimate_moves_up_only_once_it_has_held() -> None:
    selector = LayerSelector(SimulcastPolicy(upgrade_hold=3.0, **BASE))
    selector.choose(200_000, RATES, 0.0)
    assert selector.target == 0
    assert not selector.choose(5_000_000, RATES, 10.0)
    assert not selector.choose(5_000_000, RATES, 12.0)
    assert selector.target == 0
    assert selector.choose(5_000_000, RATES, 13.5)
    assert selector.target == 2


def test_a_dip_restarts_the_wait_for_an_upgrade() -> None:
    selector = LayerSelector(SimulcastPolicy(upgrade_hold=3.0, **BASE))
    selector.choose(200_000, RATES, 0.0)
    selector.choose(5_000_000, RATES, 10.0)
    selector.choose(200_000, RATES, 12.0)  # back to where it is: no upgrade
    assert not selector.choose(5_000_000, RATES, 13.5)
    assert selector.target == 0
    assert selector.choose(5_000_000, RATES, 16.6)
    assert selector.target == 2


def test_below_the_lowest_layer_video_pauses_and_resumes_when_it_fits() -> None:
    selector = LayerSelector(SimulcastPolicy(upgrade_hold=2.0, **BASE))
    assert selector.choose(60_000, RATES, 0.0)  # under half of q's 150k
    assert selector.target is None
    selector.choose(300_000, RATES, 1.0)
    assert selector.target is None  # an upgrade: waits
    assert selector.choose(300_000, RATES, 3.5)
    assert selector.target == 0


def test_an_estimate_just_under_the_lowest_layer_keeps_it() -> None:
    # a receiver estimates what it receives: 100k while getting q (150k)
    # is a congested link that still carries q, not one to stop video on
    selector = LayerSelector(SimulcastPolicy(**BASE))
    assert selector.choose(100_000, RATES, 0.0)
    assert selector.target == 0
    assert not selector.choose(100_000, RATES, 60.0)
    assert selector.target == 0


def test_a_paused_viewer_is_given_the_lowest_layer_again() -> None:
    # paused, the viewer receives audio only and its estimate stays where it
    # was: only a probe can show the link has room again
    policy = SimulcastPolicy(probe_after=5.0, probe_hold=10.0, probe_max=40.0, **BASE)
    selector = LayerSelector(policy)
    assert selector.choose(60_000, RATES, 0.0)
    assert selector.target is None
    assert not selector.choose(60_000, RATES, 4.0)
    assert selector.choose(60_000, RATES, 5.5)  # the probe
    assert selector.target == 0 and selector.probes == 1
    # the estimate needs time to climb: the probe is held whatever it says
    assert not selector.choose(60_000, RATES, 14.0)
    assert selector.target == 0
    # still far under q once the hold is over: paused, and the next probe
    # waits twice as long
    assert selector.choose(60_000, RATES, 16.0)
    assert selector.target is None
    assert not selector.choose(60_000, RATES, 16.0 + 9.0)
    assert selector.choose(60_000, RATES, 16.0 + 10.5)
    assert selector.target == 0 and selector.probes == 2
    # this time the estimate climbs over q: the probe worked, the viewer
    # stays and moves up later like anyone else
    assert not selector.choose(200_000, RATES, 30.0)
    assert not selector.choose(100_000, RATES, 45.0)  # under 0.85 * q: kept
    assert selector.target == 0


def test_a_paused_viewer_without_an_estimate_is_probed_on_the_lowest_layer() -> None:
    selector = LayerSelector(SimulcastPolicy(probe_after=5.0, **BASE))
    selector.choose(20_000, RATES, 0.0)
    assert selector.target is None
    # its receiver stops reporting on the video it no longer gets: no reason
    # to send it the top layer
    assert not selector.choose(None, RATES, 1.0)
    assert selector.target is None
    assert selector.choose(None, RATES, 6.0)
    assert selector.target == 0


def test_a_link_that_cannot_carry_the_lowest_layer_is_probed_ever_less_often() -> None:
    policy = SimulcastPolicy(probe_after=5.0, probe_hold=10.0, probe_max=40.0, **BASE)
    selector = LayerSelector(policy)
    probing = []
    for tenth in range(0, 3000):  # 300 s at an estimate of 30 kbit/s
        selector.choose(30_000, RATES, tenth / 10)
        probing.append(selector.target is not None)
    assert selector.probes >= 4  # 5, 10, 20, 40, 40... s apart
    assert sum(probing) / len(probing) < 0.35  # paused most of the time
    assert not any(probing[-150:-100])  # a 40 s wait late on


def test_a_low_first_estimate_does_not_pause_during_the_start_grace() -> None:
    # Chromium's first REMB is ~35 kbit/s whatever the link, then climbs
    selector = LayerSelector(SimulcastPolicy(start_grace=10.0, climb_after=3600.0))
    assert selector.choose(35_000, RATES, 0.0)
    assert selector.target == 0  # down to q, not paused
    assert not selector.choose(40_000, RATES, 9.5)
    assert selector.target == 0
    assert selector.choose(40_000, RATES, 10.5)  # still far under q: paused
    assert selector.target is None


def test_the_start_grace_counts_from_the_first_estimate() -> None:
    selector = LayerSelector(SimulcastPolicy(start_grace=10.0, climb_after=3600.0))
    selector.choose(None, RATES, 0.0)  # no REMB yet
    assert selector.choose(35_000, RATES, 30.0)
    assert selector.target == 0
    assert not selector.choose(35_000, RATES, 39.0)
    assert selector.choose(35_000, RATES, 40.5)
    assert selector.target is None


def test_a_viewer_held_on_a_lower_layer_climbs_to_the_next() -> None:
    # on q (150k) a receiver estimates at most ~1.5x that: never enough to
    # show that h (500k) fits, so the layer itself is tried
    policy = SimulcastPolicy(start_grace=0.0, climb_after=6.0, climb_hold=15.0)
    selector = LayerSelector(policy)
    assert selector.choose(200_000, RATES, 0.0)
    assert selector.target == 0
    assert not selector.choose(200_000, RATES, 5.5)
    assert selector.choose(200_000, RATES, 6.5)  # the climb
    assert selector.target == 1 and selector.climbs == 1
    # held while the estimate grows into it...
    assert not selector.choose(300_000, RATES, 8.0)
    assert not selector.choose(450_000, RATES, 12.0)
    assert selector.target == 1
    # ...and kept once it carries it (500k <= 0.85 * 650k)
    assert not selector.choose(650_000, RATES, 14.0)
    assert not selector.choose(650_000, RATES, 19.5)
    assert selector.target == 1
    # the next climb (to f) waits the usual 6 s from there, not longer
    assert selector.choose(650_000, RATES, 20.5)
    assert selector.target == 2 and selector.climbs == 2


def test_a_climb_the_link_cannot_carry_goes_back_down_and_waits_longer() -> None:
    policy = SimulcastPolicy(
        start_grace=0.0, climb_after=6.0, climb_hold=15.0, climb_max=60.0
    )
    selector = LayerSelector(policy)
    selector.choose(200_000, RATES, 0.0)
    assert selector.choose(200_000, RATES, 6.5)
    assert selector.target == 1
    # a congested link: the estimate rises, then cuts itself
    assert not selector.choose(300_000, RATES, 8.0)
    assert selector.choose(250_000, RATES, 9.0)  # under 0.9 * 300k: down
    assert selector.target == 0
    # the next climb waits twice as long (12 s)
    assert not selector.choose(200_000, RATES, 9.0 + 11.5)
    assert selector.choose(200_000, RATES, 9.0 + 12.5)
    assert selector.target == 1 and selector.climbs == 2
    # an estimate that neither falls nor grows into h: down when the hold ends
    assert not selector.choose(200_000, RATES, 21.5 + 14.5)
    assert selector.choose(200_000, RATES, 21.5 + 15.5)
    assert selector.target == 0
    assert not selector.choose(200_000, RATES, 37.0 + 23.5)  # now 24 s
    assert selector.choose(200_000, RATES, 37.0 + 24.5)
    assert selector.climbs == 3


def test_no_climb_above_the_subscriber_limit_or_without_a_fitting_estimate() -> None:
    policy = SimulcastPolicy(start_grace=0.0, climb_after=6.0)
    limited = LayerSelector(policy)
    limited.limit(0)
    kept = LayerSelector(policy)  # 100k: q is kept, but does not fit
    for tenth in range(0, 600):
        limited.choose(200_000, RATES, tenth / 10)
        kept.choose(100_000, RATES, tenth / 10)
    assert limited.target == 0 and limited.climbs == 0
    assert kept.target == 0 and kept.climbs == 0


def test_the_subscriber_limit_caps_the_layer() -> None:
    selector = LayerSelector()
    selector.limit(0)
    assert selector.target == 0
    selector.choose(5_000_000, RATES, 0.0)
    selector.choose(5_000_000, RATES, 100.0)
    assert selector.target == 0


# frame rate: Chromium on a detailed camera encodes q at 10-29 fps, h at
# 4-6 and f at ~2, and a viewer sees the rate of the layer it is on
SLOW_TOP = [25.0, 5.0, 2.0]


def test_a_layer_below_the_fps_floor_is_passed_over_for_a_faster_one() -> None:
    selector = LayerSelector(SimulcastPolicy(min_fps=10.0, fps_ratio=1.5, **BASE))
    selector.choose(5_000_000, RATES, 0.0, SLOW_TOP)
    assert selector.target == 0  # every layer fits: q at 25 fps, not f at 2
    unknown = LayerSelector(SimulcastPolicy(**BASE))
    unknown.choose(5_000_000, RATES, 0.0, [25.0, None, None])
    assert unknown.target == 2  # nothing known against f: by bitrate


def test_the_highest_fitting_layer_at_the_fps_floor_is_chosen() -> None:
    selector = LayerSelector(SimulcastPolicy(min_fps=10.0, **BASE))
    selector.choose(5_000_000, RATES, 0.0, [25.0, 12.0, 2.0])
    assert selector.target == 1
    # the estimate still caps it: h does not fit 400k, whatever its rate
    selector.choose(400_000, RATES, 1.0, [25.0, 12.0, 2.0])
    assert selector.target == 0


def test_a_slow_layer_is_kept_when_no_lower_one_is_much_faster() -> None:
    # an encoder short of CPU: every layer slow alike, resolution wins
    selector = LayerSelector(SimulcastPolicy(min_fps=10.0, fps_ratio=1.5, **BASE))
    selector.choose(5_000_000, RATES, 0.0, [8.0, 7.0, 6.0])
    assert selector.target == 2
    # q at 12 is not 1.5 x h's 9: h kept; f at 2 is passed over
    selector.choose(5_000_000, RATES, 1.0, [12.0, 9.0, 2.0])
    assert selector.target == 1


def test_a_min_fps_of_zero_chooses_by_bitrate_only() -> None:
    selector = LayerSelector(SimulcastPolicy(min_fps=0.0, **BASE))
    selector.choose(5_000_000, RATES, 0.0, SLOW_TOP)
    assert selector.target == 2


def test_the_fps_rule_has_hysteresis() -> None:
    policy = SimulcastPolicy(min_fps=10.0, fps_keep=0.8, upgrade_hold=3.0, **BASE)
    selector = LayerSelector(policy)
    selector.choose(5_000_000, RATES, 0.0, [25.0, 12.0, 2.0])
    assert selector.target == 1
    # h dips to 9: above 0.8 * 10, it stays
    assert not selector.choose(5_000_000, RATES, 1.0, [25.0, 9.0, 2.0])
    assert selector.target == 1
    # h at 7: left at once for q
    assert selector.choose(5_000_000, RATES, 2.0, [25.0, 7.0, 2.0])
    assert selector.target == 0
    # h back at 9: under the floor for a layer it is not on, not taken
    assert not selector.choose(5_000_000, RATES, 3.0, [25.0, 9.0, 2.0])
    assert not selector.choose(5_000_000, RATES, 8.0, [25.0, 9.0, 2.0])
    assert selector.target == 0
    # at 11 it is, once it has held (the usual upgrade hold)
    assert not selector.choose(5_000_000, RATES, 9.0, [25.0, 11.0, 2.0])
    assert selector.choose(5_000_000, RATES, 12.5, [25.0, 11.0, 2.0])
    assert selector.target == 1


def test_no_climb_to_a_layer_below_the_fps_floor() -> None:
    policy = SimulcastPolicy(start_grace=0.0, climb_after=6.0, min_fps=10.0)
    slow = LayerSelector(policy)
    fast = LayerSelector(policy)
    for tenth in range(0, 200):  # 200k: q fits, h does not
        slow.choose(200_000, RATES, tenth / 10, SLOW_TOP)
        fast.choose(200_000, RATES, tenth / 10, [25.0, 20.0, 2.0])
    assert slow.target == 0 and slow.climbs == 0
    assert fast.target == 1 and fast.climbs == 1


def test_the_fps_policy_is_checked() -> None:
    for bad in ({"min_fps": -1.0}, {"fps_ratio": 0.5}, {"fps_keep": 0.0}):
        with pytest.raises(ValueError, match="SimulcastPolicy"):
            SimulcastPolicy(**bad)


def test_a_switch_happens_on_the_targets_keyframe_only() -> None:
    selector = LayerSelector()
    assert not selector.admit(2, lambda: False)  # nothing yet: wait
    assert selector.admit(2, lambda: True)
    assert selector.current == 2
    selector.choose(400_000, RATES, 0.0)  # target q
    assert selector.admit(2, lambda: False)  # f flows until q's keyframe
    assert not selector.admit(0, lambda: False)
    assert selector.admit(0, lambda: True)
    assert selector.current == 0
    assert not selector.admit(2, lambda: True)


def test_a_pause_waits_for_the_end_of_the_frame() -> None:
    selector = LayerSelector(SimulcastPolicy(**BASE))
    assert selector.admit(2, lambda: True, ends_frame=False)
    selector.choose(10_000, RATES, 0.0)
    assert selector.target is None
    assert selector.admit(2, lambda: False, ends_frame=False)
    assert selector.admit(2, lambda: False, ends_frame=True)  # the last one
    assert selector.current is None
    assert not selector.admit(2, lambda: True, ends_frame=False)


# ---------------------------------------------------------------------------
# VP8 picture id


def vp8(pid: int, tl0: int, key: bool) -> bytes:
    """A VP8 payload: X, S; I (15-bit picture id) and L (TL0PICIDX)."""
    descriptor = bytes([0x90, 0xC0, 0x80 | (pid >> 8), pid & 0xFF, tl0])
    return descriptor + (b"\x10\x02\x00\x9d\x01\x2a" if key else b"\x11\x02\x00")


def vp8_ids(payload: bytes) -> tuple[int, int]:
    return ((payload[2] & 0x7F) << 8) | payload[3], payload[4]


def test_vp8_picture_ids_continue_across_a_rebase() -> None:
    renumbering = Vp8Renumbering()
    renumbering.note(vp8(100, 7, False))
    renumbering.rebase(vp8(30000, 200, True))
    packet = bytearray(vp8(30000, 200, True))
    renumbering.rewrite(packet, 0)
    assert vp8_ids(bytes(packet)) == (101, 8)
    packet = bytearray(vp8(0, 201, False))  # 15-bit wrap of the source
    renumbering.rewrite(packet, 0)
    assert vp8_ids(bytes(packet)) == ((0 - 30000 + 101) & 0x7FFF, 9)


# ---------------------------------------------------------------------------
# SDP

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n"
)


def test_the_offer_asks_only_the_publish_slot_for_simulcast() -> None:
    sdp = offer_simulcast(OFFER, ["1"], ["q", "h", "f"])
    sections = sdp.split("m=")
    assert "a=rid:" not in sections[1] + sections[3]
    video = sections[2]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\n" in video
    assert "a=simulcast:recv q;h;f\r\n" in video
    assert sdp.endswith("\r\n")


def test_an_offers_simulcast_is_answered_with_the_known_rids() -> None:
    # a WHIP client's offer: video sent as rids f, h, q (highest first, as
    # some clients list them) plus one pysfu does not know
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "a=sendonly",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:1",
            "a=sendonly",
            "a=rid:f send",
            "a=rid:h send",
            "a=rid:q send",
            "a=rid:x send",
            "a=simulcast:send f;h;~q;x",
            "",
        ]
    )
    answer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "a=recvonly",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:1",
            "a=recvonly",
            "",
        ]
    )
    answered = answer_simulcast(answer, offer, ("q", "h", "f"))
    video = answered.split("m=video")[1]
    assert video.endswith(
        "a=recvonly\r\na=rid:f recv\r\na=rid:h recv\r\na=rid:q recv\r\n"
        "a=simulcast:recv f;h;q\r\n"
    )
    assert "a=rid:x" not in answered
    assert "simulcast" not in answered.split("m=video")[0]  # audio untouched
    # nothing to accept: the answer as it was
    assert answer_simulcast(answer, answer, ("q", "h", "f")) == answer
    single = offer.replace("a=simulcast:send f;h;~q;x", "a=simulcast:send f;x")
    assert answer_simulcast(answer, single, ("q", "h", "f")) == answer


def test_the_answered_rids_are_read() -> None:
    answer = OFFER.replace("a=recvonly", "a=sendonly\r\na=simulcast:send q;~h;f")
    assert simulcast_rids_answered(answer, "1") == ["q", "h", "f"]
    assert simulcast_rids_answered(OFFER, "1") == []


def test_video_quality_is_a_client_message() -> None:
    message = parse_client_message(
        {"type": "video_quality", "track_id": "p/video", "max_layer": "h"}
    )
    assert message == VideoQuality(track_id="p/video", max_layer="h")
    for bad in ("x", None, 2):
        try:
            parse_client_message(
                {"type": "video_quality", "track_id": "t", "max_layer": bad}
            )
        except Exception as exc:
            assert getattr(exc, "code", None) == "bad_message"
        else:
            raise AssertionError("accepted a bad max_layer")


# ---------------------------------------------------------------------------
# a forwarder fed three layers


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


def packet(
    ssrc: int,
    seq: int,
    ts: int,
    payload: bytes,
    rid: str | None,
    pt: int = 96,
    rid_id: int = RID_ID,
) -> bytes:
    """An RTP packet, with a one-byte-header rid extension if ``rid``."""
    header = bytearray(12)
    header[0] = 0x80
    header[1] = 0x80 | pt  # marker: each test frame is one packet
    header[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
    header[4:8] = (ts & 0xFFFFFFFF).to_bytes(4, "big")
    header[8:12] = ssrc.to_bytes(4, "big")
    if rid is not None:
        header[0] |= 0x10
        ext = bytes([(rid_id << 4) | (len(rid) - 1)]) + rid.encode()
        ext += b"\x00" * (-len(ext) % 4)
        header += b"\xbe\xde" + (len(ext) // 4).to_bytes(2, "big") + ext
    return bytes(header) + payload


class Publisher:
    """Three layers, each with its own numbering, tagged with rid on their
    first ``tagged`` packets only (as Chrome does until a receiver report)."""

    def __init__(self, forwarder: Forwarder, tagged: int = 3) -> None:
        self.forwarder = forwarder
        self.tagged = tagged
        self.sent = dict.fromkeys(SSRCS, 0)
        self.seq = {"q": 100, "h": 20000, "f": 50000}
        self.pid = {"q": 10, "h": 5000, "f": 32000}

    def frame(self, rid: str, key: bool = False, now_ms: int = 0) -> None:
        count = self.sent[rid]
        data = packet(
            SSRCS[rid],
            self.seq[rid],
            3000 * count,
            vp8(self.pid[rid] & 0x7FFF, count & 0xFF, key) + b"\x55" * 200,
            rid if count < self.tagged else None,
        )
        self.forwarder.on_rtp(
            RtpPacket.parse(data), data, now_ms, self.forwarder.clock()
        )
        self.sent[rid] += 1
        self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
        self.pid[rid] += 1

    def all_layers(self, key: bool = False, now_ms: int = 0) -> None:
        for rid in SSRCS:
            self.frame(rid, key, now_ms)


def make_forwarder(**policy: float) -> tuple[Forwarder, Recorder]:
    upstream = Recorder()
    timers = ManualTimers()  # time stands still: no event loop needed
    forwarder = Forwarder(
        track_id="p/video",
        kind="video",
        publisher_id="p",
        upstream=upstream,
        rtcp_ssrc=1,
        clock=timers,
        call_at=timers.call_at,
        config=ForwardingConfig(simulcast_policy=SimulcastPolicy(**{**BASE, **policy})),
    )
    forwarder.set_codecs([VP8, RTX], {RID_URI: RID_ID, RRID_URI: RRID_ID})
    return forwarder, upstream


def prime_rates(forwarder: Forwarder) -> float:
    """Give the layers RATES as if measured over the last second (on the
    forwarder's clock); returns that clock's now."""
    now = forwarder.clock()
    for layer in forwarder.layers.values():
        layer.bitrate.reset()
        layer.bitrate.add(RATES[layer.index] // 8, int(now * 1000) - 1000)
    return now


def subscribe(forwarder: Forwarder, ssrc: int) -> tuple[DownTrack, Recorder]:
    out = Recorder()
    downtrack = DownTrack(forwarder, out, ssrc=ssrc, subscriber_id=f"s{ssrc}")
    forwarder.add_downtrack(downtrack)
    downtrack.configure({96: 96}, None, 90000)
    return downtrack, out


def layer_sizes(out: Recorder) -> list[int]:
    """Which layer each forwarded packet came from, by its payload size."""
    return [len(p.payload) for p in out.rtp]


def assert_one_stream(out: Recorder, ssrc: int) -> None:
    for before, after in itertools.pairwise(out.rtp):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
        assert 0 <= (after.timestamp - before.timestamp) & 0xFFFFFFFF < 0x80000000
        pid_before, pid_after = vp8_ids(before.payload)[0], vp8_ids(after.payload)[0]
        assert pid_after == (pid_before + 1) & 0x7FFF
    assert {p.ssrc for p in out.rtp} == {ssrc}


def test_layers_are_learned_by_rid_and_kept_without_it() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder, tagged=2)
    for _ in range(10):
        publisher.all_layers()
    assert {rid: layer.media_ssrc for rid, layer in forwarder.layers.items()} == SSRCS
    assert {rid: layer.packets_received for rid, layer in forwarder.layers.items()} == {
        "q": 10,
        "h": 10,
        "f": 10,
    }
    assert forwarder.stats.unknown_ssrc == 0
    blocks = forwarder.receiver_reports(forwarder.clock())
    assert {block.ssrc for block in blocks} == set(SSRCS.values())


def test_a_subscriber_follows_its_estimate_with_one_continuous_stream() -> None:
    forwarder, upstream = make_forwarder()
    changes: list[tuple[str, int | None, int | None]] = []
    forwarder.on_layer_changed = lambda d, before, after: changes.append(
        (d.subscriber_id, before, after)
    )
    publisher = Publisher(forwarder)
    fast, fast_out = subscribe(forwarder, 0xA)
    slow, slow_out = subscribe(forwarder, 0xB)
    publisher.all_layers(key=True)
    assert fast.layers.current == 2 and slow.layers.current == 2

    # the slow one reports 300 kbit/s: only q fits (h and f send more)
    now = prime_rates(forwarder)
    slow.on_estimate(300_000, now)
    assert slow.layers.target == 0
    plis = [p for p in upstream.rtcp if isinstance(p, RtcpPsfbPacket) and p.fmt == 1]
    assert plis[-1].media_ssrc == SSRCS["q"]  # a keyframe of the new layer

    slow_before = len(slow_out.rtp)
    publisher.all_layers()  # no keyframe yet: the slow one stays on f
    assert slow.layers.current == 2
    publisher.frame("q", key=True)  # the switch
    assert slow.layers.current == 0
    publisher.all_layers()
    assert fast.layers.current == 2
    assert_one_stream(slow_out, 0xB)
    assert_one_stream(fast_out, 0xA)
    assert len(slow_out.rtp) > slow_before
    assert (0xB, 2, 0) in [(int(s[1:]), b, a) for s, b, a in changes]
    stats = SubscriptionStats.of(slow)
    assert stats.layer == "q" and stats.layer_switches == 2  # start, then q
    assert SubscriptionStats.of(fast).layer == "f"

    # the publisher is held to its uplink, not to the slow subscriber
    assert (
        forwarder.target_bitrate(now) is None
        or (forwarder.target_bitrate(now) or 0) > 300_000
    )


def test_below_the_lowest_layer_the_video_pauses() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xC)
    publisher.all_layers(key=True, now_ms=0)
    for step in range(1, 11):
        publisher.all_layers(now_ms=step * 100)
    assert out.rtp
    downtrack.on_estimate(10_000, prime_rates(forwarder))
    assert downtrack.layers.target is None
    publisher.all_layers(now_ms=1200)  # f's frame in progress ends, then none
    assert downtrack.layers.current is None
    sent = len(out.rtp)
    for step in range(5):
        publisher.all_layers(key=True, now_ms=1300 + step * 100)
    assert len(out.rtp) == sent
    assert SubscriptionStats.of(downtrack).layer is None


def test_a_paused_subscriber_gets_video_again_after_a_probe() -> None:
    forwarder, _ = make_forwarder()
    timers = forwarder.clock
    assert isinstance(timers, ManualTimers)
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xC)
    publisher.all_layers(key=True)
    downtrack.on_estimate(60_000, prime_rates(forwarder))  # under half of q
    assert downtrack.layers.target is None
    publisher.all_layers()
    assert downtrack.layers.current is None
    paused = len(out.rtp)
    # its estimate stays where it was (it receives audio only); time passes
    for _ in range(20):
        timers.advance(0.5)
        downtrack.on_estimate(60_000, prime_rates(forwarder))
        publisher.all_layers(key=True, now_ms=int(timers.now * 1000))
    assert downtrack.layers.current == 0  # q, the lowest
    assert len(out.rtp) > paused
    assert SubscriptionStats.of(downtrack).layer == "q"


def test_a_subscriber_on_a_lower_layer_is_given_the_next_one_to_try() -> None:
    forwarder, _ = make_forwarder(climb_after=6.0, climb_hold=15.0)
    timers = forwarder.clock
    assert isinstance(timers, ManualTimers)
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xC)
    publisher.all_layers(key=True)
    downtrack.on_estimate(200_000, prime_rates(forwarder))  # carries q only
    publisher.all_layers(key=True)
    assert downtrack.layers.current == 0
    # its estimate stays at what q lets it show; time passes
    for _ in range(16):
        timers.advance(0.5)
        downtrack.on_estimate(200_000, prime_rates(forwarder))
        publisher.all_layers(key=True, now_ms=int(timers.now * 1000))
    assert downtrack.layers.current == 1  # h, to see whether the link carries it
    assert SubscriptionStats.of(downtrack).layer == "h"
    assert out.rtp[-1].ssrc == downtrack.ssrc


def test_a_low_uplink_estimate_does_not_hold_a_simulcast_publisher() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder)
    subscribe(forwarder, 0xD)
    publisher.all_layers(key=True)
    forwarder.stats.uplink_estimate = 200_000  # event-loop jitter on a busy host
    assert forwarder.target_bitrate(forwarder.clock()) == (
        forwarder.config.max_video_bitrate
    )


def test_a_subscriber_limit_picks_a_smaller_layer() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xD)
    publisher.all_layers(key=True)
    assert downtrack.layers.current == 2
    downtrack.limit_layer(1, forwarder.clock())
    publisher.frame("h", key=True)
    assert downtrack.layers.current == 1
    assert_one_stream(out, 0xD)


def test_padding_probes_on_a_layers_rtx_are_not_forwarded() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xE)
    publisher.all_layers(key=True)
    sent = len(out.rtp)
    # Chrome's probe: P bit, 223 zero octets and the count; on f's RTX SSRC
    probe = bytearray(
        packet(0x3001, 7, 0, bytes(223) + bytes([224]), "f", pt=97, rid_id=RRID_ID)
    )
    probe[0] |= 0x20
    forwarder.on_rtp(RtpPacket.parse(bytes(probe)), bytes(probe), 0, forwarder.clock())
    assert forwarder.layers["f"].rtx_ssrc == 0x3001
    assert forwarder.stats.padding_received == 1
    assert len(out.rtp) == sent
    assert not downtrack.waiting_keyframe
    publisher.all_layers()
    assert_one_stream(out, 0xE)


def test_a_late_packet_from_before_the_switch_is_not_forwarded() -> None:
    forwarder, _ = make_forwarder()
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xF)
    publisher.all_layers(key=True)
    publisher.all_layers()
    downtrack.limit_layer(0, forwarder.clock())
    late_seq = publisher.seq["q"] - 1  # q's packet before its keyframe
    publisher.frame("q", key=True)
    assert downtrack.layers.current == 0
    late = packet(SSRCS["q"], late_seq, 0, vp8(5, 0, False), None)
    # e.g. a retransmission
    forwarder.on_rtp(RtpPacket.parse(late), late, 0, forwarder.clock())
    publisher.frame("q")
    assert downtrack.stats.dropped_before_switch == 1
    assert_one_stream(out, 0xF)


def test_a_subscriber_gets_the_layer_with_frames_not_the_slow_top_one() -> None:
    # Chromium's layers on a detailed camera: q 25 fps, h 5, f 2
    forwarder, _ = make_forwarder()
    timers = forwarder.clock
    assert isinstance(timers, ManualTimers)
    publisher = Publisher(forwarder)
    downtrack, out = subscribe(forwarder, 0xD)
    every = {"q": 4, "h": 20, "f": 50}  # in 10 ms ticks
    for tick in range(600):  # 6 s
        for rid, interval in every.items():
            if tick % interval == 0:
                # q's frames are keyframes, so that a switch can happen
                publisher.frame(rid, key=rid == "q" or tick == 0)
        timers.advance(0.01)
    stats = PublishedTrackStats.of(forwarder)
    fps = stats.layer_fps
    assert fps["q"] == pytest.approx(25, abs=1.5)
    assert fps["h"] == pytest.approx(5, abs=0.6)
    assert fps["f"] == pytest.approx(2, abs=0.6)
    assert set(stats.layer_bitrates) == {"q", "h", "f"}
    assert all(rate and rate > 0 for rate in stats.layer_bitrates.values())
    # no estimate: every layer fits, and the choice goes by frame rate
    assert downtrack.layers.target == 0 and downtrack.layers.current == 0
    assert SubscriptionStats.of(downtrack).layer == "q"
    assert_one_stream(out, 0xD)


def test_published_track_stats_have_no_layers_without_simulcast() -> None:
    forwarder, _ = make_forwarder()
    stats = PublishedTrackStats.of(forwarder)
    assert stats.layer_fps == {} and stats.layer_bitrates == {}


def test_pysfu_serve_sets_the_fps_floor() -> None:
    from pysfu.app.server import parse_args

    assert parse_args([]).simulcast_min_fps == 10.0
    assert parse_args(["--simulcast-min-fps=0"]).simulcast_min_fps == 0.0
    with pytest.raises(SystemExit):
        parse_args(["--simulcast-min-fps=-1"])
