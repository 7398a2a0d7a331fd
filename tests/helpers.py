from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection


async def eventually(
    predicate: Callable[[], object], timeout: float = 20, what: str = ""
) -> None:
    """Wait until ``predicate()`` is true; fail with ``what`` after ``timeout`` s.

    The timeout is a liveness bound (generous, for noisy shared machines), not a
    performance assertion.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def ice_sockets(pc: RTCPeerConnection) -> list[Any]:
    """The aioice protocols (one per local candidate, each with its UDP
    transport) of a client connection: of its transceivers and data channels,
    each once, since bundled ones share an ICE connection."""
    connections = {
        id(dtls.transport._connection): dtls.transport._connection
        for dtls in [t.receiver.transport for t in pc.getTransceivers()]
        + ([pc.sctp.transport] if pc.sctp is not None else [])
    }
    return [p for c in connections.values() for p in c._protocols]
