"""ICE connectivity checks sent by hand, to see which credentials a server
accepts (an ICE restart must refuse the old ones)."""

from __future__ import annotations

import asyncio
import socket

import aioice.stun


def candidate_address(sdp: str) -> tuple[str, int]:
    """The first host candidate's address in ``sdp``."""
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            return fields[4], int(fields[5])
    raise AssertionError("no candidate in the offer")


async def stun_check(
    address: tuple[str, int], username: str, password: str
) -> aioice.stun.Message | None:
    """Send one ICE connectivity check; the response, or None if none came."""
    request = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.REQUEST,
    )
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password.encode("utf8"))
    request.add_fingerprint()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(3):  # UDP: retransmitted, as a real agent would
            await loop.sock_sendto(sock, bytes(request), address)
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 1.0)
            except TimeoutError:
                continue
            return aioice.stun.parse_message(data)
        return None
    finally:
        sock.close()
