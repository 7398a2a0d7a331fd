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

import aiohttp
import pytest

from ..example_server import example_server
from ..helpers import eventually, ice_sockets
from ..integration.test_ws_example import host_and_guest
from ..peers import PeerFactory

pytestmark = pytest.mark.adversarial

#: Longer than the consent deadline (2 s x 5 by default).
STALL = 12.0


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


async def test_the_app_takes_the_consent_timeout_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pysfu serve --consent-timeout`` (and ``PYSFU_CONSENT_TIMEOUT``):
    the library's deadline by default, whole checks of its interval; fewer
    seconds than one interval, or no number, are refused at start-up."""
    from pysfu import IceConfig
    from pysfu.app.server import make_server, parse_args

    library = IceConfig()
    assert parse_args([]).consent_timeout == (
        library.consent_interval * library.consent_failures
    )
    sfu = make_server(parse_args(["--consent-timeout=30"])).sfu
    assert sfu is not None
    try:
        ice = sfu.config.ice
        assert (ice.consent_interval, ice.consent_failures) == (2.0, 15)
    finally:
        await sfu.close()
    monkeypatch.setenv("PYSFU_CONSENT_TIMEOUT", "4")
    assert parse_args([]).consent_timeout == 4.0
    for wrong in ("1", "0", "-5", "ten", "nan", "inf"):
        with pytest.raises(SystemExit):
            parse_args([f"--consent-timeout={wrong}"])
