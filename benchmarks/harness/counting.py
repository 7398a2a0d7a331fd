"""What the load generator counts, and the window between two counts.

Receivers count RTP packets per SSRC and their sequence numbers
(:class:`StreamCount`); a :class:`LoadSnapshot` holds every count, the
publishers' sent totals and the generator's CPU time at one instant, and
:meth:`LoadWindow.between` turns two snapshots into what happened in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StreamCount:
    """What one receiver got on one SSRC, without decoding anything."""

    kind: str
    packets: int = 0
    octets: int = 0
    first: int = -1
    highest: int = -1  # extended sequence number (wraps unrolled)

    def add(self, sequence_number: int, size: int) -> None:
        if self.highest < 0:
            self.first = self.highest = sequence_number
        else:
            delta = (sequence_number - self.highest) & 0xFFFF
            if delta < 0x8000:  # newer; older packets are late or repeated
                self.highest += delta
        self.packets += 1
        self.octets += size

    def copy(self) -> StreamCount:
        return StreamCount(
            self.kind, self.packets, self.octets, self.first, self.highest
        )


@dataclass
class LoadSnapshot:
    """Counters of the load generator at one instant."""

    time: float
    cpu_seconds: float
    #: packets and bytes the publishers sent so far, per kind
    sent: dict[str, tuple[int, int]]
    #: (receiver name, SSRC) -> its count
    streams: dict[tuple[str, int], StreamCount] = field(default_factory=dict)


@dataclass
class LoadWindow:
    """What happened between two snapshots."""

    seconds: float
    client_cpu_seconds: float
    received_packets: int
    #: from the sequence numbers: received_packets plus the ones missing
    expected_packets: int
    sent_packets: dict[str, int]
    sent_octets: dict[str, int]

    @staticmethod
    def between(before: LoadSnapshot, after: LoadSnapshot) -> LoadWindow:
        received = expected = 0
        for key, now in after.streams.items():
            then = before.streams.get(key)
            if then is None:
                then = StreamCount(now.kind, 0, 0, now.first, now.first - 1)
            received += now.packets - then.packets
            expected += now.highest - then.highest
        kinds = after.sent.keys()
        return LoadWindow(
            seconds=after.time - before.time,
            client_cpu_seconds=after.cpu_seconds - before.cpu_seconds,
            received_packets=received,
            expected_packets=expected,
            sent_packets={
                k: after.sent[k][0] - before.sent.get(k, (0, 0))[0] for k in kinds
            },
            sent_octets={
                k: after.sent[k][1] - before.sent.get(k, (0, 0))[1] for k in kinds
            },
        )
