"""REMB estimators: pysfu's rate counter and estimator against aiortc's, and
receivers slimmed (more traces: tests/unit/test_remb_estimator.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiortc import RTCRtpReceiver
from aiortc.rate import RateCounter, RemoteBitrateEstimator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysfu import SFU
from pysfu._aiortc import (
    AiortcIncompatible,
    check_hook_points,
    remote_bitrate_estimator,
)
from pysfu._aiortc.bitrate import WindowedRate
from pysfu._aiortc.estimator import _RECEIVER_ESTIMATOR as RECEIVER_ESTIMATOR
from pysfu.rtp.estimator import RembEstimator

from ..peers import PeerFactory

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# (operation, milliseconds since the previous operation, bytes)
operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "rate", "reset"]),
        st.one_of(st.integers(-5, 40), st.integers(0, 3000)),  # < 0: reordered
        st.integers(0, 1500),
    ),
    max_size=200,
)


@SETTINGS
@given(operations, st.integers(0, 2**40), st.sampled_from([1, 10, 1000]))
def test_the_counter_agrees_with_aiortcs(
    ops: list[tuple[str, int, int]], start: int, window: int
) -> None:
    ours, theirs = WindowedRate(window, 8000), RateCounter(window, 8000)
    now = start
    for op, elapsed, size in ops:
        now += elapsed
        origin = theirs._origin_ms  # the oracle's window start
        if op == "add" and origin is not None and now < origin:
            continue  # older than the window: aiortc's counter mis-files it
        if op == "add":
            ours.add(size, now)
            theirs.add(size, now)
        elif op == "reset":
            ours.reset()
            theirs.reset()
        assert ours.rate(now) == theirs.rate(now)


def test_a_sample_older_than_the_window_is_not_counted() -> None:
    rate = WindowedRate(1000, 8000)
    rate.add(1000, 5000)
    rate.add(1000, 6500)  # the window now starts at 5501
    before = rate.rate(6500)
    rate.add(1000, 5400)
    assert rate.rate(6500) == before == 8000 * 1000 // 1000


def video_arrivals(seed: int) -> list[tuple[int, int, int]]:
    """(arrival ms, abs-send-time, payload bytes) of 30 s of 30 fps video whose
    network queue builds up and drains again, so the estimate moves."""
    rng = random.Random(seed)
    packets = []
    queue_ms = 0.0
    for frame in range(900):
        sent_ms = frame * 1000 / 30
        if 300 <= frame < 420:
            queue_ms += rng.uniform(0, 3)  # overuse: delay grows
        else:
            queue_ms = max(queue_ms - 2, 0)
        for _ in range(rng.randint(1, 8)):
            arrival = int(sent_ms + 5 + queue_ms + rng.uniform(0, 2))
            abs_send_time = int(sent_ms / 1000 * (1 << 18)) & 0xFFFFFF
            packets.append((arrival, abs_send_time, rng.randint(200, 1200)))
    return packets


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_estimator_reports_what_aiortcs_reports(seed: int) -> None:
    ours, stock = remote_bitrate_estimator(), RemoteBitrateEstimator()
    reports = []
    for arrival, abs_send_time, size in video_arrivals(seed):
        report = ours.add(arrival, abs_send_time, size, 1234)
        assert report == stock.add(arrival, abs_send_time, size, 1234)
        if report is not None:
            reports.append(report[0])
    assert len(set(reports)) > 3  # the estimate moved: the comparison meant something


async def test_every_video_receiver_of_the_server_is_slimmed(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=3).join(room, "host")
    guest = await peers("guest", code=9).join(room)
    await guest.wait_video_from(host)
    await host.wait_video_from(guest)
    for participant in (room.host, *room.participants):
        assert participant is not None
        video = [t for t in participant.pc.getTransceivers() if t.kind == "video"]
        directions = {t.direction for t in video}
        assert directions == {"recvonly", "sendonly"}  # publishes and subscribes
        for transceiver in video:
            estimator = getattr(transceiver.receiver, RECEIVER_ESTIMATOR)
            assert isinstance(estimator, RembEstimator)


def test_a_receiver_without_its_estimator_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def init(self: RTCRtpReceiver, kind: str, transport: Any) -> None:
        self.kind = kind

    monkeypatch.setattr(RTCRtpReceiver, "__init__", init)
    with pytest.raises(AiortcIncompatible, match="__remote_bitrate_estimator"):
        check_hook_points()
