"""aiortc's NACK generator with a fast path for the packet that comes next."""

from __future__ import annotations

from typing import Any

from aiortc.rtcrtpreceiver import NackGenerator as _StockNackGenerator


class NackGenerator(_StockNackGenerator):
    """aiortc's ``NackGenerator``, same state and results, cheaper per packet.

    Nearly every packet is the one after the highest seen. aiortc then still
    compares sequence numbers through helper calls and rebuilds a list of the
    missing set to truncate it (empty or not): ~2 µs per video packet. Here
    that packet, with nothing missing, only moves ``max_seq``; any other goes
    through aiortc's code (``tests/unit/test_nack_generator.py`` compares
    both on random sequences).
    """

    def add(self, packet: Any) -> bool:
        max_seq = self.max_seq
        if (
            max_seq is not None
            and not self.missing
            and packet.sequence_number == (max_seq + 1) & 0xFFFF
        ):
            self.max_seq = packet.sequence_number
            return False
        return super().add(packet)
