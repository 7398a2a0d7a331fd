"""pysfu's REMB estimator against aiortc's: the same estimates, packet by packet.

Tolerance: none. The estimator repeats aiortc's floating-point operations in
the same order, so every report (bit/s and SSRCs) and the detector's
hypothesis after every packet must be identical, not merely close.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from aiortc.rate import RemoteBitrateEstimator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysfu._aiortc import remote_bitrate_estimator
from pysfu._aiortc.bitrate import WindowedRate
from pysfu.rtp.estimator import OVERUSING, UNDERUSING, RembEstimator

#: (arrival ms, abs-send-time, payload bytes, SSRC)
Packet = tuple[int, int, int, int]

AST_PER_SECOND = 1 << 18  # abs-send-time: 6.18 fixed point seconds


def frames(
    seconds: float,
    fps: int,
    delay_ms: Iterator[float],
    rng: random.Random,
    packets: tuple[int, int] = (1, 8),
    start_ast: int = 0,
) -> list[Packet]:
    """A video stream: each frame's packets sent together, each arriving
    after the next value of ``delay_ms`` (one per frame) and a little jitter."""
    trace = []
    for frame in range(int(seconds * fps)):
        sent_ms = frame * 1000 / fps
        delay = next(delay_ms)
        ast = (start_ast + int(sent_ms / 1000 * AST_PER_SECOND)) & 0xFFFFFF
        for _ in range(rng.randint(*packets)):
            arrival = int(sent_ms + delay + rng.uniform(0, 2))
            trace.append((arrival, ast, rng.randint(200, 1200), 1234))
    return trace


def steady(seed: int) -> list[Packet]:
    """30 s of 30 fps over a link with a constant delay."""
    rng = random.Random(seed)
    return frames(30, 30, iter(lambda: 20.0, None), rng)


def congested(seed: int) -> list[Packet]:
    """Delay growing by 0-3 ms a frame for 4 s, then draining: over-use."""
    rng = random.Random(seed)

    def delays() -> Iterator[float]:
        queue = 0.0
        frame = 0
        while True:
            if 150 <= frame < 270:
                queue += rng.uniform(0, 3)
            else:
                queue = max(queue - 2, 0)
            frame += 1
            yield 5 + queue

    return frames(30, 30, delays(), rng)


def bursty(seed: int) -> list[Packet]:
    """A link that holds packets for 60 ms of every 100 and then lets them
    through at once (a Wi-Fi or cellular scheduler), at 60 fps with large
    frames; abs-send-time wraps (every 64 s) in the middle."""
    rng = random.Random(seed)
    start = 0x1000000 - 10 * AST_PER_SECOND  # 10 s before the wrap
    trace = frames(20, 60, iter(lambda: 10.0, None), rng, (3, 12), start)
    return [
        (max(arrival, arrival // 100 * 100 + 60), ast, size, ssrc)
        for arrival, ast, size, ssrc in trace
    ]


def sparse_and_two_ssrcs(seed: int) -> list[Packet]:
    """5 fps with a 2 s pause (the incoming rate starts over) and packets of a
    second SSRC (simulcast layers share an estimator)."""
    rng = random.Random(seed)
    first = frames(6, 5, iter(lambda: 30.0, None), rng)
    second = [
        (arrival + 8000, (ast + 8 * AST_PER_SECOND) & 0xFFFFFF, size, 5678)
        for arrival, ast, size, _ in frames(6, 5, iter(lambda: 30.0, None), rng)
    ]
    return first + second


def received(trace: list[Packet]) -> list[Packet]:
    """In the order of arrival, as a socket hands them on."""
    return sorted(trace, key=lambda packet: packet[0])


TRACES = {
    "steady": steady,
    "congested": congested,
    "bursty": bursty,
    "sparse": sparse_and_two_ssrcs,
}


def stock_with_windowed_rate() -> RemoteBitrateEstimator:
    """aiortc's estimator with the rate counter pysfu used until now (the
    same figures as aiortc's, tests/integration/test_estimator.py, except that
    aiortc's mis-files a sample older than its window, which reordered
    arrivals produce)."""
    stock = RemoteBitrateEstimator()
    stock.incoming_bitrate = WindowedRate(1000, 8000)  # type: ignore[assignment]
    return stock


def reports(
    trace: list[Packet], ours: RembEstimator, stock: RemoteBitrateEstimator
) -> list[int]:
    """Feed both; assert every result and the hypothesis after every packet
    are the same; the estimates reported."""
    estimates = []
    for i, (arrival, ast, size, ssrc) in enumerate(trace):
        report = ours.add(arrival, ast, size, ssrc)
        assert report == stock.add(arrival, ast, size, ssrc), f"packet {i}"
        assert ours.hypothesis == stock.detector.state().value, f"packet {i}"
        if report is not None:
            estimates.append(report[0])
    return estimates


@pytest.mark.parametrize("name", sorted(TRACES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_estimates_as_aiortcs(name: str, seed: int) -> None:
    trace = received(TRACES[name](seed))
    ours, stock = RembEstimator(), RemoteBitrateEstimator()
    estimates = reports(trace, ours, stock)
    assert len(set(estimates)) > 3  # the estimate moved: the comparison meant something


def test_a_congested_link_is_seen_as_over_used_and_the_estimate_falls() -> None:
    """What the comparison covers: the over-use path, not only increases."""
    ours = RembEstimator()
    hypotheses = set()
    before_overuse: int | None = None
    on_overuse: int | None = None
    for arrival, ast, size, ssrc in received(congested(1)):
        report = ours.add(arrival, ast, size, ssrc)
        hypotheses.add(ours.hypothesis)
        if report is None or on_overuse is not None:
            continue
        if ours.hypothesis == OVERUSING:
            on_overuse = report[0]
        else:
            before_overuse = report[0]
    assert OVERUSING in hypotheses and UNDERUSING in hypotheses
    assert before_overuse is not None and on_overuse is not None
    assert on_overuse < 0.9 * before_overuse


def test_the_reports_name_every_ssrc_seen() -> None:
    ours = RembEstimator()
    last = None
    for packet in received(sparse_and_two_ssrcs(1)):
        last = ours.add(*packet) or last
    assert last is not None and last[1] == [1234, 5678]


# steps between packets: arrival ms (some reordered, some long gaps),
# abs-send-time (mostly the same frame or the next, some backwards), size
STEPS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 3), st.integers(-5, 40), st.integers(0, 3000)),
        st.one_of(
            st.just(0),
            st.integers(0, AST_PER_SECOND // 20),
            st.integers(-AST_PER_SECOND // 50, 0),
            st.integers(0, 0xFFFFFF),
        ),
        st.integers(0, 1500),
        st.sampled_from([1, 1, 1, 2]),
    ),
    max_size=400,
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(STEPS, st.integers(0, 2**40), st.integers(0, 0xFFFFFF))
def test_any_trace_gives_the_same_results(
    steps: list[tuple[int, int, int, int]], start_ms: int, start_ast: int
) -> None:
    ours, stock = RembEstimator(), stock_with_windowed_rate()
    now, ast = start_ms, start_ast
    trace = []
    for arrival_step, ast_step, size, ssrc in steps:
        now += arrival_step
        ast = (ast + ast_step) & 0xFFFFFF
        trace.append((now, ast, size, ssrc))
    reports(trace, ours, stock)


def test_the_seam_gives_pysfus_estimator() -> None:
    assert isinstance(remote_bitrate_estimator(), RembEstimator)
