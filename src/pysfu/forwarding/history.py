"""Short per-track packet history, to answer subscribers' NACKs at the SFU."""

from __future__ import annotations

__all__ = [
    "PacketHistory",
]


class PacketHistory:
    """The last ``size`` packets of a stream, indexed by sequence number.

    Stored as a fixed ring so that keeping history allocates nothing per
    packet beyond the tuple that holds the (already allocated) bytes.
    """

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._ring: list[tuple[int, int, bytes] | None] = [None] * size

    def put(self, ssrc: int, sequence_number: int, data: bytes) -> None:
        self._ring[sequence_number % self._size] = (ssrc, sequence_number, data)

    def get(self, ssrc: int, sequence_number: int) -> bytes | None:
        entry = self._ring[sequence_number % self._size]
        if entry is None or entry[0] != ssrc or entry[1] != sequence_number:
            return None
        return entry[2]
