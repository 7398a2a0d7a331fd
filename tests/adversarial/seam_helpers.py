"""Attack tools against the aiortc/aioice seam: hostile ICE agents, raw
datagrams, raw SRTP and SCTP, for the ``test_ice_*``, ``test_udp_*``,
``test_srtp_*``, ``test_sctp_*``, ``test_candidates_*`` and ``test_stall_*``
tests of this tier."""

from __future__ import annotations

import asyncio
import ctypes
import random
import re
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioice.ice
import aioice.stun
from aiortc import RTCPeerConnection

from pysfu._aiortc import datagram_endpoint, dtls_transport_of, protect_rtp, udpsock

from ..helpers import LIVENESS

Pair = aioice.ice.CandidatePair


def ice_connections(pc: RTCPeerConnection) -> list[aioice.ice.Connection]:
    """The aioice connections of a client (bundled ones once)."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    found = {id(d.transport._connection): d.transport._connection for d in transports}
    return list(found.values())


class RoleConflictHijack:
    """Turns a client's ICE agent into the attacker of issue 20.1.

    The attacker knows the server's username fragment but not its password,
    so none of its own checks can pass. It answers the server's checks,
    which the server signs with the *attacker's* password, and claims a role
    conflict (487) to every check that says "controlled", hoping the server
    turns controlling and nominates the pair on its own checks. Its own
    agent then accepts the server's nomination without any check of its own.
    """

    def __init__(self) -> None:
        #: connectivity checks the server sent to the attacker
        self.checks_received = 0
        self.conflicts_claimed = 0

    def install(self, pc: RTCPeerConnection) -> None:
        for conn in ice_connections(pc):
            self._hijack(conn)

    def install_before_answer(self, pc: RTCPeerConnection) -> None:
        """Hijack as soon as the client's answer is applied (its ICE agent
        exists then, and no check has arrived yet)."""
        set_local = pc.setLocalDescription

        async def set_local_description(description: Any = None) -> None:
            self.install(pc)
            await set_local(description)

        pc.setLocalDescription = set_local_description  # type: ignore[method-assign]

    def _hijack(self, conn: aioice.ice.Connection) -> None:
        if getattr(conn, "_hijacked", False):
            return
        conn._hijacked = True  # type: ignore[attr-defined]
        request_received = conn.request_received

        def hijacked_request(
            message: aioice.stun.Message, addr: tuple[str, int], protocol: Any
        ) -> None:
            self.checks_received += 1
            if "ICE-CONTROLLED" in message.attributes:
                self.conflicts_claimed += 1
                conn.respond_error(message, addr, protocol, (487, "Role Conflict"))
                return
            conn.ice_controlling = False  # let the server control
            request_received(message, addr, protocol)

        async def wait_for_nomination(pair: Pair) -> None:
            conn.check_state(pair, Pair.State.IN_PROGRESS)
            while not pair.remote_nominated:
                await asyncio.sleep(0.05)
            conn.check_state(pair, Pair.State.SUCCEEDED)
            pair.nominated = True
            conn.check_complete(pair)

        conn.request_received = hijacked_request  # type: ignore[method-assign]
        conn.check_start = wait_for_nomination  # type: ignore[method-assign]


async def wait_quiet(
    seconds: float, still_true: Callable[[], object], what: str
) -> None:
    """Watch ``still_true()`` for ``seconds`` (a window in which an attack
    that works shows, not a speed bound); fail as soon as it turns false."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        assert still_true(), what
        await asyncio.sleep(0.1)


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), from /proc."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    kib = next(
        line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")
    )
    return int(kib) * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_in_use() -> int:
    """Bytes malloc has handed out and not had back, in this process (C
    libraries such as libsrtp included); steadier than RSS, which keeps
    freed pages."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def host_candidate_port(sdp: str) -> int:
    """The UDP port of the first host candidate in an SDP."""
    match = re.search(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", sdp)
    assert match is not None, "no host candidate in the SDP"
    return int(match.group(1))


def stun_ping(sock: socket.socket, addr: tuple[str, int], tries: int = 50) -> None:
    """Send an unauthenticated STUN Binding request and wait for the answer
    (400 Bad Request): every datagram sent to ``addr`` before it has been read
    by the server. Blocking; run it in a thread."""
    request = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.REQUEST,
    )
    sock.settimeout(0.5)
    for _ in range(tries):
        sock.sendto(bytes(request), addr)
        try:
            while True:
                data, _ = sock.recvfrom(2048)
                if data[8:20] == request.transaction_id:
                    return
        except TimeoutError:
            continue
    raise AssertionError(f"no STUN answer from {addr}")


def blast(
    addr: tuple[str, int], datagrams: list[bytes], count: int, batch: int = 2
) -> None:
    """Send ``count`` datagrams (cycling through ``datagrams``) to ``addr``,
    ``batch`` at a time, each batch confirmed read with :func:`stun_ping`, so
    that none is lost in the kernel however busy the machine. Blocking."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for sent in range(count):
            sock.sendto(datagrams[sent % len(datagrams)], addr)
            if sent % batch == batch - 1:
                stun_ping(sock, addr)
        stun_ping(sock, addr)


async def send_random_ssrcs(
    pc: RTCPeerConnection, count: int, *, batch: int = 200, seed: int = 1
) -> None:
    """Send ``count`` RTP packets, each of a new random SSRC, through a
    connected client's own SRTP session and socket (a hostile publisher).

    Batches fit the server's socket buffer, and each is sent once the server
    answered a STUN request sent after the previous one (it reads a socket
    in order, and hands STUN on at once) and then handed on the media it
    read (:func:`handed_on`), so none is lost however busy the machine. The
    client forgets each SSRC's outbound stream after use, so that only the
    receiving side's memory grows."""
    transceiver = pc.getTransceivers()[0]
    dtls = dtls_transport_of(transceiver)
    endpoint = datagram_endpoint(dtls)
    assert endpoint is not None, "the client is not connected"
    transport, protocol, addr = endpoint
    session = dtls._tx_srtp
    rng = random.Random(seed)
    for sent in range(1, count + 1):
        ssrc = rng.getrandbits(32)
        packet = struct.pack("!BBHII", 0x80, 96, 1, 1234, ssrc) + bytes(100)
        transport.sendto(protect_rtp(dtls, packet), addr)
        session.remove_stream(ssrc)
        if sent % batch == 0 or sent == count:
            ping = aioice.stun.Message(
                message_method=aioice.stun.Method.BINDING,
                message_class=aioice.stun.Class.REQUEST,
            )
            try:  # unauthenticated: answered 400, which the transaction raises
                await protocol.request(ping, addr, retransmissions=4)  # type: ignore[attr-defined]
            except aioice.stun.TransactionFailed:
                pass
            except aioice.stun.TransactionTimeout:
                raise AssertionError(
                    f"the server stopped answering after {sent} packets"
                ) from None
            await handed_on(batch)


async def replay_srtcp(
    pc: RTCPeerConnection,
    packet: bytes,
    *,
    batch: int = 200,
    until: Callable[[], object],
    limit: int,
) -> int:
    """Send one RTCP ``packet``, protected once with a connected client's own
    SRTCP session, again and again through its socket (a hostile peer: no
    crypto per packet for it, a decryption attempt and the receive path's
    work for the server each time) until ``until()`` or ``limit`` copies.

    Each batch is sent once the server answered a STUN request sent after
    the previous one and handed on what it read (:func:`handed_on`), so
    none is lost however busy the machine. Returns the copies sent."""
    transports = [dtls_transport_of(t) for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    dtls = transports[0]
    endpoint = datagram_endpoint(dtls)
    assert endpoint is not None, "the client is not connected"
    transport, protocol, addr = endpoint
    protected = bytes(dtls._tx_srtp.protect_rtcp(packet))
    sent = 0
    while sent < limit and not until():
        for _ in range(batch):
            transport.sendto(protected, addr)
        sent += batch
        ping = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING,
            message_class=aioice.stun.Class.REQUEST,
        )
        try:  # unauthenticated: answered 400, which the transaction raises
            await asyncio.wait_for(
                protocol.request(ping, addr, retransmissions=4),  # type: ignore[attr-defined]
                LIVENESS,  # (a transaction on a closed socket never ends)
            )
        except aioice.stun.TransactionFailed:
            pass
        except (aioice.stun.TransactionTimeout, TimeoutError):
            if until():
                break  # removed meanwhile: its connection is gone
            raise AssertionError(
                f"the server stopped answering after {sent} packets"
            ) from None
        await handed_on(batch)
    return sent


async def handed_on(datagrams: int) -> None:
    """Let a server in this process hand on the ``datagrams`` media datagrams
    it just read from one socket: at most ``MAX_MEDIA_PER_WAKEUP`` per loop
    iteration, the rest held in its backlog (STUN goes first: an answered
    STUN request says the datagrams sent before it were read, not handled)."""
    for _ in range(datagrams // udpsock.MAX_MEDIA_PER_WAKEUP + 2):
        await asyncio.sleep(0)
