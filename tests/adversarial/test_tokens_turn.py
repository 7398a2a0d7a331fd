"""TURN credentials: each join answer carries its own, time-limited (the
TURN REST scheme), checked by a real coturn configured with the secret.
A client relays with the credential it was issued; an expired one, or one
signed with another secret, is refused."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from pysfu.turn import turn_credentials

from ..example_server import example_server, free_port, stop_process
from ..helpers import eventually
from ..ws_client import create_room, join

pytestmark = [pytest.mark.adversarial, pytest.mark.network]

SECRET = "turn-" + secrets.token_hex(8)


def stun_answered(port: int) -> bool:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(bytes(request), ("127.0.0.1", port))
            return len(sock.recv(2048)) >= 20
        except OSError:
            return False


@pytest.fixture
def coturn_with_secret(tmp_path: Path) -> Iterator[int]:
    """coturn on 127.0.0.1 with use-auth-secret; yields its port."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.fail("coturn is not installed (apt-get install -y coturn)")
    port = free_port()
    relay_low = 40000 + secrets.randbelow(20000)
    log = tmp_path / "turnserver.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                turnserver,
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={port}",
                f"--min-port={relay_low}",
                f"--max-port={relay_low + 100}",
                "--use-auth-secret",
                f"--static-auth-secret={SECRET}",
                "--realm=pysfu",
                "--fingerprint",
                "--no-tls",
                "--no-dtls",
                "--no-tcp-relay",
                "--allow-loopback-peers",
                "--no-cli",
                "--no-rfc5780",
                f"--pidfile={tmp_path / 'turnserver.pid'}",
                "--log-file=stdout",
                "--simple-log",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not stun_answered(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("turnserver did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)
        yield port
    finally:
        stop_process(process)


class Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))


async def relays(port: int, username: str, password: str) -> bool:
    """Whether coturn allocates with these credentials and relays a datagram."""
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(
        Received, local_addr=("127.0.0.1", 0)
    )
    try:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
        )
    except stun.TransactionFailed as exc:
        peer_transport.close()
        assert exc.response.attributes["ERROR-CODE"][0] == 401
        return False
    try:
        relayed = transport.get_extra_info("sockname")  # on coturn
        target = peer_transport.get_extra_info("sockname")
        for _ in range(100):  # the first may race the permission
            transport.sendto(b"through the relay", target)
            with contextlib.suppress(AssertionError):
                await eventually(lambda: peer.datagrams, timeout=0.5, what="relayed")
                break
        assert peer.datagrams, "nothing came through the relay"
        data, source = peer.datagrams[0]
        assert data == b"through the relay"
        assert source[1] == relayed[1]  # it came from the relayed address
        return True
    finally:
        transport.close()
        peer_transport.close()


async def test_each_client_gets_its_own_expiring_turn_credentials(
    coturn_with_secret: int,
) -> None:
    port = coturn_with_secret
    turn = f"turn:127.0.0.1:{port}?transport=udp"
    async with (
        example_server(f"--turn={turn}", f"--turn-secret={SECRET}") as base,
        aiohttp.ClientSession() as http,
    ):
        _, room = await create_room(http, base)
        answers = [
            await join(http, room["join_url"], role=r) for r in ("host", "participant")
        ]
        servers = [
            next(s for s in body["ice_servers"] if s["urls"] == turn)
            for _, body in answers
        ]
        assert servers[0]["username"] != servers[1]["username"]  # one each
        issued = servers[1]
        expiry, _, user = issued["username"].partition(":")
        assert user == answers[1][1]["participant_id"]
        assert 3500 <= int(expiry) - time.time() <= 3600  # --turn-ttl
        assert SECRET not in str(answers)
    assert await relays(port, issued["username"], issued["credential"])
    # a credential that expired (same scheme, same secret) is refused
    username, password = turn_credentials(
        SECRET, user, 60, clock=lambda: time.time() - 3600
    )
    assert not await relays(port, username, password)
    # and so is one made up without the secret
    username, password = turn_credentials("guess", user, 3600)
    assert not await relays(port, username, password)
