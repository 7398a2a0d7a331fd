"""Transport-wide congestion control feedback (TWCC): the receiver's side.

With the transport-wide sequence number extension negotiated
(draft-holmer-rmcat-transport-wide-cc-extensions-01) a sender numbers every
packet it sends on a transport, across all its streams, and its receiver
reports when each one arrived (RTCP RTPFB, FMT 15). The sender then estimates
its own uplink from the send times it kept: Chromium's delay-based
controller, its probes and its loss-based controller, as in a direct call.
The receiver only records and reports; it estimates nothing.

:class:`TransportFeedback` keeps the arrival times of one transport's
packets and writes them into feedback packets. Pure: no aiortc, no asyncio,
no clock (arrival times are passed in, in microseconds on any steady clock).
"""

from __future__ import annotations

import struct

__all__ = [
    "FEEDBACK_FMT",
    "MAX_PENDING",
    "MAX_RECEIVED_PER_PACKET",
    "TRANSPORT_CC_URI",
    "TransportFeedback",
]

#: The header extension carrying the transport-wide sequence number.
TRANSPORT_CC_URI = (
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
)
#: RTPFB feedback message type of a transport-wide feedback packet.
FEEDBACK_FMT = 15
#: Received packets listed in one feedback packet at most (each takes up to
#: 2 bytes of delta and a 16-bit chunk per 7 statuses): under ~1,200 bytes.
MAX_RECEIVED_PER_PACKET = 400
#: Packets held between two feedbacks at most; beyond, the newest are not
#: recorded (reported lost). At 100 ms between feedbacks that is 50,000
#: packets per second, far more than any camera sends: a bound against a
#: peer that floods, never reached by one that does not.
MAX_PENDING = 5000

_HEADER = struct.Struct("!BBHIIHHI")  # RTCP header, SSRCs, base, count, ref+fb count
_SMALL = 1  # status: received, delta 0..63.75 ms (one byte)
_LARGE = 2  # status: received, delta negative or larger (two bytes, signed)
_TICK_US = 250  # delta resolution
_REFERENCE_US = 64_000  # reference time resolution
_MAX_RUN = 0x1FFF  # run length chunk: 13 bits


class TransportFeedback:
    """Arrival times of one transport's packets, until they are reported.

    :meth:`record` each received packet's transport-wide sequence number
    with its arrival time; :meth:`build` (every 50-100 ms, as libwebrtc's
    receivers do) gives the feedback packets covering everything recorded
    since the last call. A packet arriving after a feedback already covered
    its number counts as :attr:`late` (reported lost; the sender's loss
    controller tolerates reordering of that size).
    """

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped seq -> arrival (µs)
        self._highest: int | None = None  # highest unwrapped seq seen
        self._next_base: int | None = None  # first seq the next feedback covers
        self._feedback_count = 0
        #: Packets recorded (duplicates not counted).
        self.received = 0
        #: Packets that arrived after their number had been reported.
        self.late = 0
        #: Packets whose number was seen already (a replay or duplicate).
        self.duplicates = 0
        #: Packets not recorded because too many were pending.
        self.overflowed = 0

    @property
    def pending(self) -> bool:
        """Whether anything waits to be reported."""
        return bool(self._arrivals)

    def record(self, sequence_number: int, arrival_us: int) -> None:
        """A packet with transport-wide ``sequence_number`` (16 bits)
        arrived at ``arrival_us``."""
        highest = self._highest
        if highest is None:
            seq = sequence_number
            self._highest = seq
        else:
            # unwrap: the 16-bit number nearest to the highest seen
            delta = (sequence_number - highest) & 0xFFFF
            seq = highest + delta if delta < 0x8000 else highest + delta - 0x10000
            if seq > highest:
                self._highest = seq
        base = self._next_base
        if base is not None and seq < base:
            self.late += 1
            return
        arrivals = self._arrivals
        if seq in arrivals:
            self.duplicates += 1
            return
        if len(arrivals) >= MAX_PENDING:
            # until the next feedback: constant work per packet under a
            # flood; the sender reads the packets left out as lost
            self.overflowed += 1
            return
        arrivals[seq] = arrival_us
        self.received += 1

    def build(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """The feedback packets for everything recorded since the last call
        (none if nothing was): RTCP RTPFB FMT 15, each a whole RTCP packet."""
        arrivals = self._arrivals
        if not arrivals:
            return []
        ordered = sorted(arrivals)
        base = self._next_base
        if base is None or base > ordered[0]:
            base = ordered[0]
        packets: list[bytes] = []
        start = 0
        while start < len(ordered):
            packet, start, base = self._one_packet(
                ordered, start, base, sender_ssrc, media_ssrc
            )
            packets.append(packet)
        self._next_base = ordered[-1] + 1
        arrivals.clear()
        return packets

    def _one_packet(
        self,
        ordered: list[int],
        start: int,
        base: int,
        sender_ssrc: int,
        media_ssrc: int,
    ) -> tuple[bytes, int, int]:
        """One feedback packet from ``ordered[start]`` on, covering sequence
        numbers from ``base``; returns it, the index of the first received
        packet it leaves out, and the base of the next packet."""
        arrivals = self._arrivals
        if ordered[start] - base > 0x7FFF:
            base = ordered[start]  # a jump: the numbers in between are given up
        reference = arrivals[ordered[start]] // _REFERENCE_US
        previous_us = reference * _REFERENCE_US
        statuses: list[int] = []
        deltas = bytearray()
        index = start
        seq = base
        while index < len(ordered) and index - start < MAX_RECEIVED_PER_PACKET:
            received = ordered[index]
            ticks = round((arrivals[received] - previous_us) / _TICK_US)
            if not -0x8000 <= ticks <= 0x7FFF or received - base >= 0xFFFF:
                if index > start:
                    break  # a gap too long for one packet: the next starts here
                ticks = max(-0x8000, min(0x7FFF, ticks))  # cannot happen first
            statuses.extend([0] * (received - seq))  # lost in between
            if 0 <= ticks <= 0xFF:
                statuses.append(_SMALL)
                deltas.append(ticks)
            else:
                statuses.append(_LARGE)
                deltas += ticks.to_bytes(2, "big", signed=True)
            previous_us += ticks * _TICK_US  # the sender adds the rounded deltas
            seq = received + 1
            index += 1
        chunks = _encode_chunks(statuses)
        body_length = _HEADER.size + len(chunks) + len(deltas)
        padding = -body_length % 4
        length_words = (body_length + padding) // 4 - 1
        first = 0x80 | FEEDBACK_FMT | (0x20 if padding else 0)
        header = _HEADER.pack(
            first,
            205,
            length_words,
            sender_ssrc,
            media_ssrc,
            base & 0xFFFF,
            len(statuses),
            ((reference & 0xFFFFFF) << 8) | (self._feedback_count & 0xFF),
        )
        self._feedback_count += 1
        tail = bytes(padding - 1) + bytes([padding]) if padding else b""
        return header + chunks + bytes(deltas) + tail, index, seq


def _encode_chunks(statuses: list[int]) -> bytes:
    """Packet status chunks for ``statuses``: a run length chunk where one
    status repeats at least 14 times, else a status vector chunk (14 one-bit
    statuses when none is a large delta, else 7 two-bit ones). The last
    vector may describe more statuses than there are; receivers read only
    the packet's status count."""
    out = bytearray()
    count = len(statuses)
    i = 0
    while i < count:
        symbol = statuses[i]
        run = 1
        while i + run < count and run < _MAX_RUN and statuses[i + run] == symbol:
            run += 1
        if run >= 14:
            out += ((symbol << 13) | run).to_bytes(2, "big")
            i += run
            continue
        window = statuses[i : i + 14]
        if len(window) > 7 and _LARGE not in window:
            bits = 0
            for position, status in enumerate(window):
                bits |= status << (13 - position)
            out += (0x8000 | bits).to_bytes(2, "big")
            i += 14
        else:
            bits = 0
            for position, status in enumerate(statuses[i : i + 7]):
                bits |= status << (12 - 2 * position)
            out += (0xC000 | bits).to_bytes(2, "big")
            i += 7
    return bytes(out)
