"""Issue 20.1: ICE completes only with the server's ICE password.

The server is ICE-lite: it sends no connectivity checks of its own and never
turns controlling, so a client that answers its checks with 487 Role
Conflict (knowing the grant's username fragment but not the password) gets
nothing, while the rightful client connects as before; in process, and
against the real example with the victim's WebSocket.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from pysfu import SFU, IceConfig, SFUConfig

from ..example_server import example_server
from ..helpers import eventually
from ..peers import PeerFactory
from ..ws_client import WsClient, create_room, join
from .seam_helpers import RoleConflictHijack, wait_quiet

pytestmark = pytest.mark.adversarial

UFRAG, PASSWORD = "victimufrag", "ServerSecret0123456789abc"


def without_password(sdp: str) -> str:
    """What the attacker can answer with: the ufrag, not the password."""
    return re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:" + "x" * 24, sdp)


@pytest.fixture(params=[None, 0], ids=["port_each", "shared_port"])
async def sfu(request: pytest.FixtureRequest) -> AsyncIterator[SFU]:
    """The server with a port per connection, and with one shared port."""
    ice = IceConfig(host_addresses=("127.0.0.1",), shared_port=request.param)
    server = SFU(SFUConfig(ice=ice))
    yield server
    await server.close()
    await asyncio.sleep(0.1)


async def test_a_role_conflict_does_not_replace_the_password(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    attacker = peers("attacker", code=2, offer_filter=without_password)
    hijack = RoleConflictHijack()
    hijack.install_before_answer(attacker.pc)
    await attacker.join(room, ice_username_fragment=UFRAG, ice_password=PASSWORD)
    guest = await peers("guest", code=3).join(room)

    # the rightful client connects and sees the host
    await guest.wait_video_from(host)
    await eventually(lambda: attacker.answers_sent >= 1, what="attacker's answer")
    server_side = room.members["attacker"].pc
    # the attack took 2 s before the fix; watch for three times that
    await wait_quiet(
        6,
        lambda: (
            server_side.connectionState != "connected"
            and attacker.pc.connectionState != "connected"
        ),
        "the attacker connected without the server's password",
    )
    assert hijack.checks_received == 0  # the server sent no checks of its own
    assert all(t.frames == 0 for t in attacker.received.values())
    downtracks = room.members["host"].publications["host/video"].downtracks
    to_attacker = [d for d in downtracks if d.subscriber_id == "attacker"]
    assert all(d.stats.packets_sent == 0 for d in to_attacker)


@pytest.mark.parametrize(
    "options", [(), ("--ice-udp-port=0",)], ids=["port_each", "shared_port"]
)
async def test_a_stolen_session_without_the_password_gets_no_media(
    http: aiohttp.ClientSession, peers: PeerFactory, options: tuple[str, ...]
) -> None:
    """The issue's attack on the real example: the attacker holds the
    victim's signalling session, answers the offer with its own credentials
    and claims role conflicts. (An id no longer opens a session, see
    test_tokens_signalling.py; here the signalling token leaked, the ICE
    password did not.)"""
    async with example_server("--max-participants=2", *options) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, victim_grant = await join(http, room["join_url"], name="victim")
        host = peers(host_grant["participant_id"], 1)
        host.attach(await WsClient.connect(http, host_grant))
        attacker = peers(victim_grant["participant_id"], 2)
        hijack = RoleConflictHijack()
        hijack.install_before_answer(attacker.pc)
        # it has the signalling session, not the ICE password to put back
        session = await WsClient.connect(http, victim_grant)
        session.password = "x" * 24
        attacker.attach(session)
        await eventually(lambda: attacker.answers_sent >= 1, what="its answer")
        await eventually(
            lambda: host.pc.connectionState == "connected", what="the host"
        )
        await wait_quiet(
            6,
            lambda: attacker.pc.connectionState != "connected",
            "the attacker connected without the server's password",
        )
        assert hijack.checks_received == 0
        assert all(t.frames == 0 for t in attacker.received.values())
