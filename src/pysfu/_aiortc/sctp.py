"""SCTP: hold a peer to the message size and receive window aiortc advertises.

aiortc announces ``a=max-message-size`` (256 KiB) and a 1 MiB receive window,
but enforces neither on what it receives: it reassembles a message of any
size before handing it over (pysfu's own size check only sees it then), and
keeps every fragment a peer sends beyond the window. A client ignoring both,
a hostile one, makes the server hold as much memory as it cares to send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.rtcsctptransport import SCTP_DATA_UNORDERED, RTCSctpTransport

from .hooks import AiortcIncompatible

#: Data a compliant sender may still have in flight when the window closes
#: (RFC 4960 section 6.1 allows one packet as a zero-window probe).
_WINDOW_SLACK = 64 * 1024


def limit_sctp_reception(
    sctp: RTCSctpTransport, on_violation: Callable[[str], None]
) -> None:
    """Abort the association of a peer that sends a message larger than the
    advertised maximum, or more unacknowledged data than the advertised
    receive window; ``on_violation`` gets the reason first.

    Only a peer breaking the protocol is affected: compliant ones never send
    either. The check is per DATA chunk and looks only at the message the
    chunk belongs to.
    """
    for name in ("_advertised_rwnd", "_inbound_streams"):
        if not hasattr(sctp, name):  # set in __init__: not in HOOK_POINTS
            raise AiortcIncompatible(f"aiortc RTCSctpTransport has no {name}")
    receive = sctp._receive_data_chunk
    max_size = sctp.getCapabilities().maxMessageSize

    async def receive_data_chunk(chunk: Any) -> None:
        problem = None
        size = len(chunk.user_data)
        if sctp._advertised_rwnd - size < -_WINDOW_SLACK:
            problem = "more data than the advertised receive window"
        elif not chunk.flags & SCTP_DATA_UNORDERED:  # ordered: one stream_seq
            stream = sctp._inbound_streams.get(chunk.stream_id)
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
