"""Attacks at the HTTP level: reading /metrics, holding every connection."""

from __future__ import annotations

import asyncio
import contextlib
import resource

import aiohttp
import pytest

from ..example_server import example_server, free_port
from ..helpers import eventually
from ..peers import PeerFactory
from ..ws_client import join
from .app_helpers import connect, room_with_host

pytestmark = [pytest.mark.adversarial, pytest.mark.network]


async def test_metrics_are_not_served_to_anyone(peers: PeerFactory) -> None:
    async with (
        example_server() as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics") as response,
    ):
        assert response.status == 404  # not configured: not served
    port = free_port()
    async with (
        example_server(
            "--metrics-token=scrape-me", f"--metrics-address=127.0.0.1:{port}"
        ) as base,
        aiohttp.ClientSession() as http,
    ):
        await room_with_host(http, base, peers)
        for headers in ({}, {"Authorization": "Bearer guess"}):
            async with http.get(f"{base}/metrics", headers=headers) as response:
                assert response.status == 401
                assert "pysfu_rooms" not in await response.text()
        good = {"Authorization": "Bearer scrape-me"}
        async with http.get(f"{base}/metrics", headers=good) as response:
            assert response.status == 200
            assert "pysfu_rooms 1.0" in await response.text()
        # the private listener serves it without a token (bind it privately)
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "pysfu_participants 1.0" in await response.text()


async def test_idle_connections_do_not_lock_out_a_join(peers: PeerFactory) -> None:
    """1,100 idle TCP connections (100 silent, then 1,000 with an unfinished
    request) against a server limited to 1,024 fds."""
    async with example_server() as base, aiohttp.ClientSession() as http:
        process = base.process
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (1024, hard))
        if soft < 2048:  # this process needs room for the 1,100 connections
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))
        room, host = await room_with_host(http, base, peers)
        port = int(base.rsplit(":", 1)[1])
        idle: list[asyncio.StreamWriter] = []
        try:
            for n in range(1100):
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    idle.append(writer)
                    if n >= 100:  # the rest trickle a request that never ends
                        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            # a legitimate participant joins (new connections) while they are
            # open; liveness bound: unprotected, the join waits for the server
            # to drop idle connections (aiohttp: 75 s), if the room lives on
            liveness = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=liveness) as fresh:
                status, grant = await join(fresh, room["join_url"])
                assert status == 200, grant
                guest = await connect(fresh, peers, grant, 2)
                assert (await guest.peer.wait_video_from(host.peer)).codes() == {1}
            # the host, connected before, still receives and the room lives
            track = await host.peer.wait_video_from(guest.peer)
            before = len(track.patterns)
            await eventually(
                lambda: len(track.patterns) > before + 30, what="media goes on"
            )
        finally:
            for writer in idle:
                writer.close()
        assert process.poll() is None
