"""SCTP: hold a peer to the message size and receive window aiortc advertises.

aiortc announces ``a=max-message-size`` (256 KiB) and a 1 MiB receive window,
but enforces neither on what it receives: it reassembles a message of any
size before handing it over (pysfu's own size check only sees it then), and
keeps every fragment a peer sends beyond the window. A client ignoring both,
a hostile one, makes the server hold as much memory as it cares to send.
And aiortc's reassembly costs O(n) per chunk in the chunks it holds: tiny
fragments (24,000 one-byte unordered ones) kept a server at 100 % CPU while
staying far below any byte limit, so the chunks held are capped too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    RTCSctpTransport,
)

from ..accounting import metered
from .hooks import AiortcIncompatible
from .transports import cpu_account_of

#: Data a compliant sender may still have in flight when the window closes
#: (RFC 4960 section 6.1 allows one packet as a zero-window probe).
_WINDOW_SLACK = 64 * 1024

#: DATA chunks held for reassembly, over all streams of an association:
#: more than a compliant sender can have in flight in the receive window
#: (1 MiB plus slack in chunks of the 1,200 bytes aiortc and browsers send).
#: Once reached, the association is aborted, so one costs at most about
#: half a million steps of aiortc's reassembly scan.
MAX_HELD_CHUNKS = 1024
#: Inbound streams (data channels) a peer may use: each holds chunks.
MAX_INBOUND_STREAMS = 64
_WHOLE = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG


def limit_sctp_reception(
    sctp: RTCSctpTransport, on_violation: Callable[[str], None]
) -> None:
    """Abort the association of a peer that sends a message larger than the
    advertised maximum, more unacknowledged data than the advertised receive
    window, more than :data:`MAX_HELD_CHUNKS` chunks waiting for reassembly,
    DATA on more than :data:`MAX_INBOUND_STREAMS` streams, or a fragment of
    an unordered message (pysfu's channel is ordered, and aiortc scans every
    held chunk for each unordered one); ``on_violation`` gets the reason
    first.

    Compliant peers of pysfu's channel do none of these. The check is per
    DATA chunk and costs at most the chunks held (bounded).
    """
    for name in ("_advertised_rwnd", "_inbound_streams"):
        if not hasattr(sctp, name):  # set in __init__: not in HOOK_POINTS
            raise AiortcIncompatible(f"aiortc RTCSctpTransport has no {name}")
    receive = sctp._receive_data_chunk
    max_size = sctp.getCapabilities().maxMessageSize

    async def receive_data_chunk(chunk: Any) -> None:
        problem = None
        size = len(chunk.user_data)
        streams = sctp._inbound_streams
        if sctp._advertised_rwnd - size < -_WINDOW_SLACK:
            problem = "more data than the advertised receive window"
        elif chunk.flags & SCTP_DATA_UNORDERED and chunk.flags & _WHOLE != _WHOLE:
            problem = "a fragment of an unordered message"
        elif chunk.stream_id not in streams and len(streams) >= MAX_INBOUND_STREAMS:
            problem = f"data on more than {MAX_INBOUND_STREAMS} streams"
        elif sum(len(s.reassembly) for s in streams.values()) >= MAX_HELD_CHUNKS:
            problem = f"more than {MAX_HELD_CHUNKS} chunks to reassemble"
        elif not chunk.flags & SCTP_DATA_UNORDERED:  # ordered: one stream_seq
            stream = streams.get(chunk.stream_id)
            if stream is not None:
                size += sum(
                    len(c.user_data)
                    for c in stream.reassembly
                    if c.stream_seq == chunk.stream_seq
                )
            if size > max_size:
                problem = f"a message over the advertised {max_size} bytes"
        if problem is None:
            await receive(chunk)
            return
        sctp._receive_data_chunk = receive  # type: ignore[method-assign]
        on_violation(problem)
        await sctp.stop()

    sctp._receive_data_chunk = receive_data_chunk  # type: ignore[method-assign]
    _meter_packets(sctp)


def _meter_packets(sctp: RTCSctpTransport) -> None:
    """Charge the CPU time of each SCTP packet (parsing, its chunks, the
    answers it causes) to the participant's account (:mod:`pysfu.accounting`)."""
    handle_data = sctp._handle_data

    async def handle_metered(data: bytes) -> None:
        await metered(cpu_account_of(sctp.transport), "data", handle_data(data))

    sctp._handle_data = handle_metered  # type: ignore[method-assign]
    # Sending what others queued for this peer (a SACK from it opens the
    # window) is the relay's work, not this peer's doing: measured without
    # charging it, so the packet that triggered it is not charged for it.
    transmit = sctp._transmit

    async def transmit_uncharged() -> None:
        await metered(None, "data", transmit())

    sctp._transmit = transmit_uncharged  # type: ignore[method-assign]
