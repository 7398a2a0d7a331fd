"""Issue 19 / 21.6: one UDP port for every peer (``IceConfig.shared_port``).

Real aiortc peers and the real example process over loopback: rooms work
with every server connection on one port, a participant that leaves is gone
from the table, datagrams from addresses that never authenticated are
dropped and counted, and a STUN check waiting behind thousands of media
datagrams is answered in the same drain, before them.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aioice.stun
import pytest

from pysfu import SFU, IceConfig, SFUConfig, _aiortc
from pysfu._aiortc import udpmux
from pysfu.signalling import MemorySignalling, Offer

from ..example_server import ROOT, example_server
from ..helpers import eventually
from ..peers import Peer, PeerFactory
from ..ws_client import WsClient, create_room, join

SHARED = IceConfig(host_addresses=("127.0.0.1",), shared_port=0)


@pytest.fixture
async def shared_sfu() -> AsyncIterator[SFU]:
    server = SFU(SFUConfig(ice=SHARED))
    yield server
    await server.close()
    await asyncio.sleep(0.1)
    gc.collect()


def server_ufrag(peer: Peer) -> str:
    """The server's ICE username fragment, as the client got it in SDP."""
    assert peer.pc.remoteDescription is not None
    found = re.search(r"a=ice-ufrag:(\S+)", peer.pc.remoteDescription.sdp)
    assert found is not None
    return found.group(1)


def ice_credentials(sdp: str) -> tuple[str, str]:
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp)
    pwd = re.search(r"a=ice-pwd:(\S+)", sdp)
    assert ufrag is not None and pwd is not None
    return ufrag.group(1), pwd.group(1)


def candidate_ports(sdp: str) -> set[int]:
    return {int(m) for m in re.findall(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+)", sdp)}


async def test_rooms_on_one_port_and_leavers_leave_the_table(
    shared_sfu: SFU, peers: PeerFactory
) -> None:
    pairs = []
    for n in range(3):
        room = shared_sfu.create_room(f"r{n}", max_participants=2)
        host = await peers(f"host{n}", code=1 + n).join(room, "host")
        guest = await peers(f"guest{n}", code=4 + n, tone=300 + 100 * n).join(room)
        pairs.append((host, guest))
    for host, guest in pairs:
        await guest.wait_video_from(host)
        await host.wait_video_from(guest)
        await guest.wait_audio_from(host)
        await host.wait_audio_from(guest)

    muxes = _aiortc.udp_muxes()
    assert len(muxes) == 1
    mux = muxes[0]
    for host, guest in pairs:
        for peer in (host, guest):
            assert peer.pc.remoteDescription is not None
            assert candidate_ports(peer.pc.remoteDescription.sdp) == {mux.port}
            assert server_ufrag(peer) in mux.ufrags()
    assert len(mux.ufrags()) == 6
    assert all(len(u) >= 16 for u in mux.ufrags())  # not aioice's 4 characters
    assert mux.dropped.get("unknown_address", 0) == 0

    leaver = pairs[0][1]
    ufrag = server_ufrag(leaver)
    assert ufrag in mux.addresses().values()
    await leaver.close()
    await eventually(lambda: ufrag not in mux.ufrags(), what="the leaver forgotten")
    assert ufrag not in mux.addresses().values()
    # the others go on
    host, guest = pairs[1]
    before = guest.track_from(host.name, "video")
    assert before is not None
    frames = before.frames
    await eventually(lambda: before.frames > frames + 10, what="video after a leave")


async def test_unauthenticated_addresses_cannot_inject(
    shared_sfu: SFU, peers: PeerFactory
) -> None:
    room = shared_sfu.create_room("r", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await guest.wait_video_from(host)
    mux = _aiortc.udp_muxes()[0]
    tap = room.members["host"].transport.tap
    assert tap is not None
    srtp_errors = tap.srtp_errors

    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        attacker.bind(("127.0.0.1", 0))
        attacker_address = attacker.getsockname()
        rtp = bytes([0x80, 96, 0, 1]) + bytes(8) + os.urandom(100)
        dtls = bytes([22, 0xFE, 0xFD]) + os.urandom(60)
        for _ in range(50):
            attacker.sendto(rtp, mux.address)
            attacker.sendto(dtls, mux.address)
        # a check with the host's ufrag but not its password: answered 401,
        # and the address is not learned
        check = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING,
            message_class=aioice.stun.Class.REQUEST,
        )
        check.attributes["USERNAME"] = f"{server_ufrag(host)}:evil"
        check.attributes["PRIORITY"] = 1
        check.attributes["ICE-CONTROLLING"] = 1
        check.add_message_integrity(b"x" * 24)
        check.add_fingerprint()
        attacker.sendto(bytes(check), mux.address)
        await eventually(
            lambda: mux.dropped.get("unknown_address", 0) >= 100,
            what="the injected datagrams counted",
        )
        for _ in range(50):
            attacker.sendto(rtp, mux.address)
        await eventually(lambda: mux.dropped["unknown_address"] >= 150, what="more")
    finally:
        attacker.close()
    assert attacker_address not in mux.addresses()
    assert tap.srtp_errors == srtp_errors  # nothing reached the host's session
    frames = guest.track_from("host", "video")
    assert frames is not None
    count = frames.frames
    await eventually(lambda: frames.frames > count + 10, what="video goes on")


async def test_stun_is_answered_before_the_media_of_its_drain(
    shared_sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """21.6: a consent check behind 2,000 waiting media datagrams is
    dispatched first in the drain that reads them all."""
    room = shared_sfu.create_room("r", max_participants=1)
    host = await peers("host", code=1).join(room, "host")
    await eventually(lambda: host.pc.connectionState == "connected", what="ICE")
    mux = _aiortc.udp_muxes()[0]
    assert host.pc.remoteDescription is not None and host.pc.localDescription
    ufrag, password = ice_credentials(host.pc.remoteDescription.sdp)
    client_ufrag, _ = ice_credentials(host.pc.localDescription.sdp)

    client_address: Any = None
    order: list[tuple[int, int]] = []  # (drain, first byte) of each delivery
    deliver = udpmux.MuxedTransport.deliver

    def spy(self: Any, data: bytes, addr: Any) -> None:
        if addr == client_address:
            order.append((mux.wakeups, data[0]))
        deliver(self, data, addr)

    monkeypatch.setattr(udpmux.MuxedTransport, "deliver", spy)

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
        client.sendto(bytes(first), mux.address)  # authenticates this address
        response, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 20)
        assert aioice.stun.parse_message(response).transaction_id == (
            first.transaction_id
        )
        # as many as the server's receive buffer surely holds, up to 2,000
        buffer = mux.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        count = min(2000, buffer // 2048)
        assert count >= 100
        rtp = bytes([0x80, 96, 0, 1]) + bytes(8) + bytes(20)
        consent = check()
        # no await in between: the server's loop cannot read meanwhile
        for _ in range(count):
            client.sendto(rtp, mux.address)
        client.sendto(bytes(consent), mux.address)
        response, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 20)
        answer = aioice.stun.parse_message(response)
        assert answer.transaction_id == consent.transaction_id
        assert answer.message_class == aioice.stun.Class.RESPONSE
        await eventually(lambda: len(order) >= count + 2, what="every datagram read")
    finally:
        client.close()
    stun_drain = order[1][0]
    assert order[1][1] < 4, "the consent check is dispatched before the media"
    assert all(first_byte >= 128 for _, first_byte in order[2:])
    assert all(drain == stun_drain for drain, _ in order[1:]), "one drain"
    assert mux.datagrams / mux.wakeups > 1  # several datagrams per wake-up


def server_udp_ports(pid: int) -> set[int]:
    """Local ports of the UDP sockets process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_the_example_serves_every_room_on_one_port(
    peers: PeerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with (
        aiohttp.ClientSession() as http,
        example_server("--max-participants=2", "--ice-udp-port=0", log=log) as base,
    ):
        pairs = []
        for n in range(2):
            _, room = await create_room(http, base)
            _, host_grant = await join(http, room["join_url"], role="host")
            _, guest_grant = await join(http, room["join_url"], name=f"g{n}")
            members = []
            for code, grant in ((1 + n, host_grant), (3 + n, guest_grant)):
                peer = peers(grant["participant_id"], code, tone=300 + 200 * n)
                client = WsClient(
                    await http.ws_connect(grant["ws_url"]), grant["ice"]["password"]
                )
                await client.hello(grant["signalling_token"])
                peer.attach(client)
                members.append(peer)
            pairs.append(members)
        for host, guest in pairs:
            await guest.wait_video_from(host)
            await host.wait_video_from(guest)
            await host.wait_audio_from(guest)
            await guest.wait_audio_from(host)
        ports = server_udp_ports(base.process.pid)
        assert len(ports) == 1
        for host, guest in pairs:
            for peer in (host, guest):
                assert peer.pc.remoteDescription is not None
                assert candidate_ports(peer.pc.remoteDescription.sdp) == ports
    # every client's DTLS reached its connection: its address was learned
    # from its first authenticated check, even one aioice deferred
    assert "unknown_address" not in log.read_text()


async def test_how_to_snippet() -> None:
    """docs/snippets/udpmux.py: the offer announces the public address and
    the one configured port."""
    spec = importlib.util.spec_from_file_location(
        "docs_snippets_udpmux", ROOT / "docs" / "snippets" / "udpmux.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sfu = module.on_one_port("127.0.0.1", "203.0.113.7", port)
    try:
        room = sfu.create_room("r")
        client = await MemorySignalling().join(room, "alice", "host")
        offer = await client.receive_type(Offer, timeout=10)
        candidates = [line for line in offer.sdp.splitlines() if "candidate:" in line]
        assert candidates and all(f" 203.0.113.7 {port} " in c for c in candidates)
        assert [m.port for m in _aiortc.udp_muxes()] == [port]
    finally:
        await sfu.close()


async def test_an_early_check_makes_its_address_known(shared_sfu: SFU) -> None:
    """A check that comes before the server has the client's answer is
    answered but deferred by aioice; its address must still be known at
    once, or the client's DTLS, sent as soon as the answer arrives, is
    dropped (seen with the example: ``unknown_address`` at every join)."""
    room = shared_sfu.create_room("r")
    client = await MemorySignalling().join(room, "alice", "host")
    offer = await client.receive_type(Offer, timeout=10)  # never answered
    ufrag, password = ice_credentials(offer.sdp)
    mux = _aiortc.udp_muxes()[0]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.setblocking(False)
        peer.bind(("127.0.0.1", 0))
        check = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING,
            message_class=aioice.stun.Class.REQUEST,
        )
        check.attributes["USERNAME"] = f"{ufrag}:early"
        check.attributes["PRIORITY"] = 1
        check.attributes["ICE-CONTROLLING"] = 1
        check.add_message_integrity(password.encode())
        check.add_fingerprint()
        peer.sendto(bytes(check), mux.address)
        answer, _ = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 20)
        assert aioice.stun.parse_message(answer).message_class == (
            aioice.stun.Class.RESPONSE
        )
        assert mux.addresses().get(peer.getsockname()) == ufrag
        peer.sendto(bytes([22, 0xFE, 0xFD]) + bytes(60), mux.address)  # "DTLS"
        await asyncio.sleep(0.2)
    assert "unknown_address" not in mux.dropped


async def test_a_drained_backlog_of_rtcp_is_queued_not_dropped(
    shared_sfu: SFU, peers: PeerFactory
) -> None:
    """A drain hands a whole backlog on at once (after a stall: every report
    and NACK a peer sent meanwhile): its SRTCP must fit the peer's queue."""
    room = shared_sfu.create_room("r", max_participants=1)
    host = await peers("host", code=1).join(room, "host")
    await eventually(lambda: host.pc.connectionState == "connected", what="ICE")
    mux = _aiortc.udp_muxes()[0]
    tap = room.members["host"].transport.tap
    assert tap is not None and host.pc.remoteDescription and host.pc.localDescription
    ufrag, password = ice_credentials(host.pc.remoteDescription.sdp)
    client_ufrag, _ = ice_credentials(host.pc.localDescription.sdp)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setblocking(False)
        client.bind(("127.0.0.1", 0))
        check = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING,
            message_class=aioice.stun.Class.REQUEST,
        )
        check.attributes["USERNAME"] = f"{ufrag}:{client_ufrag}"
        check.attributes["PRIORITY"] = 1
        check.attributes["ICE-CONTROLLING"] = 1
        check.add_message_integrity(password.encode())
        check.add_fingerprint()
        client.sendto(bytes(check), mux.address)  # this address is the peer's
        await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 20)
        read = mux.datagrams
        # a receiver report from one SSRC, as SRTCP (its tag fails: counted
        # by aiortc, harmless), 300 of them while the loop cannot read
        report = bytes([0x81, 201, 0, 7]) + bytes([1, 2, 3, 4]) + bytes(40)
        for _ in range(300):
            client.sendto(report, mux.address)
        await eventually(lambda: mux.datagrams >= read + 300, what="the backlog")
    assert "queue_full" not in tap.datagrams_dropped
