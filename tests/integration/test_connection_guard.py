"""ConnectionGuard in front of a real aiohttp server: the cap holds during a
burst, connections without a request (silent or trickling) are closed, and
a real request is served meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from pysfu.signalling.connections import ConnectionGuard

from ..helpers import eventually


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[ConnectionGuard, int]]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(runner.server, max_connections=20, idle_timeout=1.0)
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0)
    yield guard, server.sockets[0].getsockname()[1]
    server.close()
    await runner.cleanup()


async def test_idle_and_trickling_connections_give_way(
    guarded: tuple[ConnectionGuard, int],
) -> None:
    guard, port = guarded
    writers = []
    most = 0
    for n in range(60):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        if n >= 10:  # a request that never ends
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0)
        most = max(most, guard.open_connections)
    assert most <= 20  # never above the cap, also while making room
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/") as response,
    ):
        assert (response.status, await response.text()) == (200, "hello")
    await eventually(
        lambda: guard.open_connections == 0, what="the idle ones are closed"
    )
    assert guard.shed >= 60
    for writer in writers:
        writer.close()
