"""Issue 21: STUN first on the socket of each connection (the default mode).

A consent check waiting behind hundreds of media datagrams in a
connection's own socket is handed to aioice before that media, each
readiness event reads many datagrams, not one, and media the reader does
not hand on at once waits in pysfu's backlog, not in the kernel's buffer,
where what came next (a consent answer) was dropped once it overflowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import time
from typing import Any

import aioice.stun
import pytest

from pysfu import SFU
from pysfu._aiortc import udpsock

from ..helpers import eventually, ice_sockets
from ..peers import PeerFactory


def ice_credentials(sdp: str) -> tuple[str, str]:
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp)
    pwd = re.search(r"a=ice-pwd:(\S+)", sdp)
    assert ufrag is not None and pwd is not None
    return ufrag.group(1), pwd.group(1)


def host_port(sdp: str) -> int:
    found = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp)
    assert found is not None
    return int(found.group(1))


async def test_stun_is_handed_on_before_the_media_of_its_batch(
    sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = sfu.create_room("r", max_participants=1)
    # no media of its own: the server's socket holds what this test sends
    host = await peers("host", code=1, publish_video=False, publish_audio=False).join(
        room, "host"
    )
    await eventually(lambda: host.pc.connectionState == "connected", what="ICE")
    assert host.pc.remoteDescription is not None and host.pc.localDescription
    server_sdp = host.pc.remoteDescription.sdp
    ufrag, password = ice_credentials(server_sdp)
    client_ufrag, _ = ice_credentials(host.pc.localDescription.sdp)
    server = ("127.0.0.1", host_port(server_sdp))

    client_address: Any = None
    order: list[tuple[int, int]] = []  # (batch, first byte) of each delivery
    (protocol,) = ice_sockets(room.members["host"].pc)
    sock = protocol.transport
    assert isinstance(sock, udpsock.ConnectionSocket)

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def datagram_received(self, data: bytes, addr: Any) -> None:
            if addr == client_address:
                order.append((sock.wakeups, data[0]))
            self.inner.datagram_received(data, addr)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(sock, "_protocol", Spy(sock._protocol))

    def check() -> aioice.stun.Message:
        message = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING,
            message_class=aioice.stun.Class.REQUEST,
        )
        message.attributes["USERNAME"] = f"{ufrag}:{client_ufrag}"
        message.attributes["PRIORITY"] = 1
        message.attributes["ICE-CONTROLLING"] = 1
        message.add_message_integrity(password.encode())
        message.add_fingerprint()
        return message

    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        client.bind(("127.0.0.1", 0))
        client_address = client.getsockname()
        first = check()
        client.sendto(bytes(first), server)
        response, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 20)
        assert aioice.stun.parse_message(response).transaction_id == (
            first.transaction_id
        )
        # more than is handed on per iteration, less than the socket's
        # receive buffer holds (about 630 small datagrams in aioice's 256 KiB)
        count = 500
        assert udpsock.MAX_MEDIA_PER_WAKEUP < count <= udpsock.MAX_DATAGRAMS_PER_WAKEUP
        rtp = bytes([0x80, 96, 0, 1]) + bytes(8) + bytes(20)
        consent = check()
        # no await in between: the server's loop cannot read meanwhile
        for _ in range(count):
            client.sendto(rtp, server)
        client.sendto(bytes(consent), server)
        response, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 20)
        answer = aioice.stun.parse_message(response)
        assert answer.transaction_id == consent.transaction_id
        assert answer.message_class == aioice.stun.Class.RESPONSE
        await eventually(lambda: len(order) >= count + 2, what="every datagram read")
    finally:
        client.close()
    batches = [batch for batch, _ in order[1:]]
    # (the batches also hold the client's own datagrams: a few more at most)
    assert (
        len(set(batches)) <= math.ceil((count + 1) / udpsock.MAX_MEDIA_PER_WAKEUP) + 2
    ), "read in batches, not one datagram per wake-up"
    stun_at = next(i for i, (_, byte) in enumerate(order) if i and byte < 4)
    # read at once with the media sent before it, and handed on before it
    # (the reader before handed it on after 480 of them)
    assert stun_at == 1, "STUN before all the media waiting with it"
    assert sum(1 for _, byte in order[1:] if byte < 4) == 1
    assert sock.datagrams / sock.wakeups > 1


async def test_a_socket_can_pause_and_closes_once() -> None:
    """What aioice and the tests use of a transport: pause, resume, close
    (the protocol learns it once, the socket is closed after)."""
    received: list[bytes] = []
    lost: list[Exception | None] = []

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.append(data)

        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport = udpsock.open_connection_socket(sock, Protocol())
    address = transport.get_extra_info("sockname")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        transport.pause_reading()
        sender.sendto(b"\x80a", address)
        await asyncio.sleep(0.05)
        assert received == []
        transport.resume_reading()
        await eventually(lambda: received == [b"\x80a"], what="read after resume")
        transport.sendto(b"back", sender.getsockname())
        assert sender.recv(16) == b"back"
        transport.close()
        transport.close()
        await eventually(lambda: lost == [None], what="connection_lost")
        assert sock.fileno() == -1
    finally:
        sender.close()


class Recorder(asyncio.DatagramProtocol):
    """Records each datagram with the kernel arrival time the reader gives
    (:func:`udpsock.arrival_time`), when it was handed on and in which
    readiness event of its socket."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[tuple[bytes, float | None, float, int]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(
            (data, udpsock.arrival_time(), time.monotonic(), self.transport.wakeups)
        )


async def test_datagrams_carry_the_kernels_arrival_times() -> None:
    """Issue 14: a datagram's arrival time is when the kernel received it,
    not when a busy loop got to it, on the monotonic clock."""
    recorder = Recorder()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport = udpsock.open_connection_socket(sock, recorder)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent: list[tuple[float, float]] = []  # (before, after) each send
    try:
        address = transport.get_extra_info("sockname")
        # the loop is blocked from here on: nothing is read meanwhile
        for n in range(5):
            before = time.monotonic()
            sender.sendto(bytes([0x80, n]), address)
            sent.append((before, time.monotonic()))
            time.sleep(0.05)
        time.sleep(0.2)
        await eventually(lambda: len(recorder.received) == 5, what="all read")
    finally:
        transport.close()
        sender.close()
    assert [data[1] for data, *_ in recorder.received] == list(range(5))
    arrivals = [arrival for _, arrival, _, _ in recorder.received]
    assert all(a is not None for a in arrivals), "the kernel stamped each"
    read_at = recorder.received[0][2]
    # generous: the conversion's two clock reads may be preempted apart
    for (before, after), arrival in zip(sent, arrivals, strict=True):
        assert arrival is not None
        assert before - 0.05 < arrival < after + 0.05
    first, last = arrivals[0], arrivals[-1]
    assert first is not None and last is not None
    assert last - first > 0.15, "spread over the sends (>= 4 x 50 ms apart)"
    assert read_at - first > 0.3, "not the time the loop read them"
    assert udpsock.arrival_time() is None, "only while a datagram is handed on"


async def test_a_flooding_socket_cannot_starve_anothers_media() -> None:
    """Issue 21: both sockets ready in one loop iteration, the flooder's
    socket hands on at most MAX_MEDIA_PER_WAKEUP datagrams before the other
    socket's media; the rest of the flood follows in later iterations, at
    most as many in each."""
    order: list[str] = []
    iteration = [0]
    per_iteration: dict[int, int] = {}  # the flooder's datagrams in each

    class Tagged(asyncio.DatagramProtocol):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def datagram_received(self, data: bytes, addr: Any) -> None:
            order.append(self.tag)
            if self.tag == "flooder":
                per_iteration[iteration[0]] = per_iteration.get(iteration[0], 0) + 1

    loop = asyncio.get_running_loop()
    ticking = True

    def tick() -> None:  # runs once in every loop iteration
        iteration[0] += 1
        if ticking:
            loop.call_soon(tick)

    transports = []
    for tag in ("flooder", "peer"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        transports.append(udpsock.open_connection_socket(sock, Tagged(tag)))
    flooder, peer = (t.get_extra_info("sockname") for t in transports)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood = 128  # what the reader took at once before (up to 256)
    try:
        loop.call_soon(tick)
        # no await in between: both sockets are ready when the loop looks
        for _ in range(flood):
            sender.sendto(b"\x80" + bytes(39), flooder)
        for _ in range(5):
            sender.sendto(b"\x80" + bytes(1099), peer)
        await eventually(lambda: len(order) == flood + 5, what="all read")
    finally:
        ticking = False
        for transport in transports:
            transport.close()
        sender.close()
    last_of_peer = max(i for i, tag in enumerate(order) if tag == "peer")
    assert order[:last_of_peer].count("flooder") <= udpsock.MAX_MEDIA_PER_WAKEUP < flood
    assert max(per_iteration.values()) <= udpsock.MAX_MEDIA_PER_WAKEUP
    assert len(per_iteration) >= flood // udpsock.MAX_MEDIA_PER_WAKEUP


def kernel_capacity(size: int, receive_buffer: int) -> int:
    """How many datagrams of ``size`` bytes a socket with ``receive_buffer``
    (as asked with ``SO_RCVBUF``) holds before the kernel drops more."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        for _ in range(5000):
            sender.sendto(bytes(size), receiver.getsockname())
        held = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                receiver.recv(size)
                held += 1
        assert 0 < held < 5000
        return held
    finally:
        receiver.close()
        sender.close()


async def test_media_left_unread_cannot_make_the_kernel_drop_stun() -> None:
    """Issue 21: a socket holds more media than is handed on in one loop
    iteration; while the loop hands it on, more media arrives, then a STUN
    consent answer. The reader before left what it did not hand on in the
    kernel, whose buffer then overflowed and dropped the answer; now it
    reads it all into pysfu's backlog, and STUN is handed on at once."""
    receive_buffer = 262144  # aioice's, as pysfu's sockets ask for
    size = 100
    capacity = kernel_capacity(size, receive_buffer)
    first = 200  # more than one iteration's media, fewer than one read
    assert udpsock.MAX_MEDIA_PER_WAKEUP + 50 < first <= udpsock.MAX_DATAGRAMS_PER_WAKEUP
    second = capacity - 20  # fits an empty buffer, not one still holding the first
    media = b"\x80" + bytes(size - 1)
    stun = b"\x01" + bytes(size - 1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    handed: list[bytes] = []

    class Busy(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not handed:  # the second burst arrives while the loop is busy
                for _ in range(second):
                    sender.sendto(media, address)
                sender.sendto(stun, address)
            handed.append(data)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    transport = udpsock.open_connection_socket(sock, Busy())
    try:
        for _ in range(first):  # no await: the loop reads them all at once
            sender.sendto(media, address)
        await eventually(lambda: stun in handed, what="the STUN datagram handed on")
        # everything read: handed on, or dropped by the reader (counted)
        await eventually(
            lambda: len(handed) + transport.media_dropped == first + second + 1,
            what="every datagram read",
        )
        # STUN before the media still waiting when it arrived
        assert handed.index(stun) < len(handed) - 1
    finally:
        transport.close()
        sender.close()
