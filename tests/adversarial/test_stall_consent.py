"""Issues 21.6 and 20.8: a stalled server is not an outage.

A server whose event loop stalls cannot read its sockets, so consent
answers are lost or read late; pysfu counted that time against every peer
and dropped them all 10 s later. Now the time the server itself was stalled
does not count against a peer: the example process stopped (SIGSTOP) for
12 s, longer than the 10 s consent deadline, drops nobody, while a peer that
truly vanishes is still dropped.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ..example_server import example_server
from ..helpers import eventually, ice_sockets
from ..integration.test_ws_example import host_and_guest
from ..peers import PeerFactory

pytestmark = pytest.mark.adversarial

#: Longer than the consent deadline (2 s x 5 by default).
STALL = 12.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def left(raw: list[dict[str, object]], participant_id: str) -> bool:
    return any(
        m["type"] == "participant-left" and m["participant_id"] == participant_id
        for m in raw
    )


async def test_a_stalled_server_drops_nobody_but_the_vanished(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with example_server() as base:
        _, host, guest = await host_and_guest(http, base, peers)
        track = await guest.peer.wait_video_from(host.peer)
        guest_id = guest.grant["participant_id"]
        host_id = host.grant["participant_id"]

        os.kill(base.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(STALL)
        finally:
            os.kill(base.process.pid, signal.SIGCONT)
        # media resumes, and goes on for 4 s of video (the checks due at once
        # after the stall, and two more rounds): nobody was dropped
        frames = len(track.patterns)
        await eventually(
            lambda: len(track.patterns) > frames + 120, timeout=60, what="media"
        )
        assert not left(host.ws.raw, guest_id)
        assert not left(guest.ws.raw, host_id)
        assert guest.peer.pc.connectionState == "connected"

        # a peer that truly vanishes (stops reading its sockets) is dropped
        for protocol in ice_sockets(guest.peer.pc):
            protocol.transport.pause_reading()
        await eventually(
            lambda: left(host.ws.raw, guest_id), timeout=40, what="guest dropped"
        )
