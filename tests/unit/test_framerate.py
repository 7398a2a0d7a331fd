"""The per-layer frame rate counter (time passed in)."""

from __future__ import annotations

import pytest

from pysfu.forwarding.framerate import FrameRate


def test_frames_are_counted_not_packets() -> None:
    rate = FrameRate(window_ms=4000)
    for frame in range(40):  # 10 fps, 3 packets a frame, for 4 s
        for _ in range(3):
            rate.add(3000 + 9000 * frame, 100 * frame)
    assert rate.rate(4000) == pytest.approx(10.0, abs=0.3)


def test_the_rate_covers_the_last_window_only() -> None:
    rate = FrameRate(window_ms=4000)
    for frame in range(100):  # 25 fps for 4 s...
        rate.add(3600 * frame, 40 * frame)
    for frame in range(8):  # ...then 2 fps for 4 s
        rate.add(3600 * 100 + 45000 * frame, 4000 + 500 * frame)
    assert rate.rate(7999) == pytest.approx(2.0, abs=0.3)


def test_reordered_packets_of_an_earlier_frame_are_not_a_frame() -> None:
    rate = FrameRate()
    assert rate.add(90_000, 0)
    assert rate.add(93_000, 33)
    assert not rate.add(90_000, 40)  # late packet of the first frame
    assert not rate.add(93_000, 41)
    assert rate.add(96_000, 66)


def test_the_timestamp_may_wrap() -> None:
    rate = FrameRate()
    assert rate.add(0xFFFF_F000, 0)
    assert rate.add(0x0000_0400, 33)  # past the wrap: newer
    assert not rate.add(0xFFFF_F000, 40)


def test_nothing_is_known_before_half_a_second() -> None:
    rate = FrameRate()
    assert rate.rate(0) is None
    rate.add(0, 1000)
    rate.add(3000, 1033)
    assert rate.rate(1400) is None
    assert rate.rate(1500) == pytest.approx(4.0)  # 2 frames in 0.5 s


def test_a_stream_that_stops_falls_to_zero_and_reset_forgets() -> None:
    rate = FrameRate(window_ms=2000)
    for frame in range(20):
        rate.add(3000 * frame, 100 * frame)
    assert rate.rate(10_000) == 0.0
    rate.reset()
    assert rate.rate(10_000) is None
    assert rate.add(0, 10_000)  # any timestamp starts afresh


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        FrameRate(0)
