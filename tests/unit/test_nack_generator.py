"""pysfu's NACK generator is aiortc's, with a fast path: same state and results."""

from __future__ import annotations

from aiortc.rtcrtpreceiver import NackGenerator as StockNackGenerator
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from pysfu._aiortc import NackGenerator

# steps between successive sequence numbers: mostly the next one, some
# losses, reordering, duplicates, wraps and jumps far beyond the history
STEPS = st.lists(
    st.one_of(
        st.just(1),
        st.integers(-5, 40),
        st.integers(-0x8000, 0x8000),
    ),
    max_size=300,
)


@given(start=st.integers(0, 0xFFFF), steps=STEPS)
@settings(max_examples=300, deadline=None)
def test_same_state_and_results_as_aiortcs(start: int, steps: list[int]) -> None:
    ours, stock = NackGenerator(), StockNackGenerator()
    seq = start
    for step in [0, *steps]:
        seq = (seq + step) & 0xFFFF
        packet = RtpPacket(sequence_number=seq)
        assert ours.add(packet) == stock.add(packet)
        assert ours.max_seq == stock.max_seq
        assert ours.missing == stock.missing


def test_a_loss_is_reported_and_then_filled() -> None:
    nack = NackGenerator()
    for seq in (65534, 65535, 0):  # across the wrap: the fast path
        assert not nack.add(RtpPacket(sequence_number=seq))
    assert nack.add(RtpPacket(sequence_number=3))
    assert nack.missing == {1, 2}
    assert not nack.add(RtpPacket(sequence_number=4))  # the slow path: 1, 2 missing
    nack.add(RtpPacket(sequence_number=1))
    nack.add(RtpPacket(sequence_number=2))
    assert nack.missing == set()
    assert nack.max_seq == 4
