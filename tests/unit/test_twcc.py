"""Transport-wide feedback packets (pysfu.rtp.twcc), read back by a decoder
written from the draft's text (draft-holmer-rmcat-transport-wide-cc-
extensions-01, section 3.1), as a sender such as Chromium reads them."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from pysfu.rtp.twcc import (
    MAX_PENDING,
    MAX_RECEIVED_PER_PACKET,
    TransportFeedback,
)


@dataclass
class Decoded:
    sender_ssrc: int
    media_ssrc: int
    base: int
    feedback_count: int
    reference_us: int
    #: sequence number (16 bits) -> arrival (µs, from the reference), or
    #: None: reported lost
    statuses: list[tuple[int, int | None]]


def decode(packet: bytes) -> Decoded:
    first, packet_type, length = struct.unpack_from("!BBH", packet)
    assert first >> 6 == 2 and first & 0x1F == 15 and packet_type == 205
    assert len(packet) == 4 * (length + 1)
    end = len(packet)
    if first & 0x20:
        end -= packet[-1]
    sender, media, base, count, reference_and_count = struct.unpack_from(
        "!IIHHI", packet, 4
    )
    reference = reference_and_count >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    symbols: list[int] = []
    at = 20
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", packet, at)
        at += 2
        if not chunk & 0x8000:  # run length
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # 14 one-bit symbols
            symbols += [(chunk >> (13 - i)) & 1 for i in range(14)]
        else:  # 7 two-bit symbols
            symbols += [(chunk >> (12 - 2 * i)) & 3 for i in range(7)]
    symbols = symbols[:count]
    time_us = reference * 64_000
    statuses: list[tuple[int, int | None]] = []
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            statuses.append((seq, None))
            continue
        assert symbol in (1, 2)
        if symbol == 1:
            delta = packet[at]
            at += 1
        else:
            (delta,) = struct.unpack_from("!h", packet, at)
            at += 2
        time_us += delta * 250
        statuses.append((seq, time_us))
    assert at <= end, "deltas run past the packet"
    assert end - at < 4, "more than padding after the deltas"
    return Decoded(sender, media, base, reference_and_count & 0xFF, reference, statuses)


def received(decoded: list[Decoded]) -> dict[int, int]:
    return {seq: at for d in decoded for seq, at in d.statuses if at is not None}


def test_every_packet_is_reported_with_its_arrival_to_250_us() -> None:
    feedback = TransportFeedback()
    arrivals = {seq: 1_000_000 + seq * 3_300 for seq in range(100, 180)}
    for seq, at in arrivals.items():
        feedback.record(seq, at)
    [packet] = [decode(p) for p in feedback.build(0x1111, 0x2222)]
    assert (packet.sender_ssrc, packet.media_ssrc, packet.base) == (0x1111, 0x2222, 100)
    assert [seq for seq, _ in packet.statuses] == list(range(100, 180))
    for seq, at in received([packet]).items():
        assert abs(at - arrivals[seq]) <= 125
    assert not feedback.pending


def test_losses_reordering_and_large_gaps_in_arrival() -> None:
    feedback = TransportFeedback()
    sent = list(range(65_500, 65_536)) + list(range(0, 40))  # wraps
    rng = random.Random(7)
    lost = set(rng.sample(sent, 12))
    kept = [s for s in sent if s not in lost]
    rng.shuffle(kept)  # arrive out of order: negative deltas
    time = 5_000_000
    arrivals: dict[int, int] = {}
    for i, seq in enumerate(kept):
        time += 1_000 if i != 30 else 900_000  # one long stall: a 2-byte delta
        arrivals[seq] = time
        feedback.record(seq, time)
    decoded = [decode(p) for p in feedback.build(1, 2)]
    statuses = [s for d in decoded for s in d.statuses]
    assert [seq for seq, _ in statuses] == sent
    assert {seq for seq, at in statuses if at is None} == lost
    for seq, at in received(decoded).items():
        assert abs(at - arrivals[seq]) <= 125


def test_consecutive_feedbacks_continue_and_count() -> None:
    feedback = TransportFeedback()
    decoded: list[Decoded] = []
    for round_ in range(3):
        for seq in range(round_ * 10, round_ * 10 + 8):  # 8, 9 of each lost...
            feedback.record(seq, 70_000 * round_ + seq * 1000)
        decoded += [decode(p) for p in feedback.build(1, 2)]
    assert [d.feedback_count for d in decoded] == [0, 1, 2]
    # ... and reported as lost in the next feedback, which starts after the last
    assert [d.base for d in decoded] == [0, 8, 18]
    assert [seq for seq, at in decoded[1].statuses if at is None] == [8, 9]
    assert feedback.build(1, 2) == []


def test_a_packet_after_its_feedback_is_late_and_a_duplicate_is_ignored() -> None:
    feedback = TransportFeedback()
    for seq in (1, 3):
        feedback.record(seq, seq * 1000)
    feedback.build(1, 2)
    feedback.record(2, 5000)  # reported lost already
    feedback.record(4, 6000)
    feedback.record(4, 7000)
    assert (feedback.late, feedback.duplicates) == (1, 1)
    [packet] = [decode(p) for p in feedback.build(1, 2)]
    assert packet.statuses == [(4, 6000 - packet.reference_us * 64_000)]


def test_many_packets_are_split_and_each_part_stands_alone() -> None:
    feedback = TransportFeedback()
    count = 3 * MAX_RECEIVED_PER_PACKET + 17
    for seq in range(count):
        feedback.record(seq, 10_000_000 + seq * 400)
    packets = feedback.build(1, 2)
    assert len(packets) == 4
    assert all(len(p) < 1200 for p in packets)
    decoded = [decode(p) for p in packets]
    assert sorted(received(decoded)) == list(range(count))
    for seq, at in received(decoded).items():
        assert abs(at - (10_000_000 + seq * 400)) <= 125


def test_a_jump_in_numbering_gives_up_the_gap_instead_of_listing_it() -> None:
    feedback = TransportFeedback()
    feedback.record(10, 1000)
    feedback.build(1, 2)
    # +32000 three times between two feedbacks: far beyond one packet's count
    for step in range(1, 4):
        feedback.record((10 + 32_000 * step) & 0xFFFF, 1000 + step * 1000)
    decoded = [decode(p) for p in feedback.build(1, 2)]
    assert sum(1 for d in decoded for _, at in d.statuses if at is not None) == 3
    assert all(len(d.statuses) <= 0xFFFF for d in decoded)


def test_a_flood_of_numbers_is_bounded() -> None:
    feedback = TransportFeedback()
    for seq in range(MAX_PENDING + 100):
        feedback.record(seq, seq)
    assert feedback.overflowed == 100
    assert sum(len(decode(p).statuses) for p in feedback.build(1, 2)) == MAX_PENDING
