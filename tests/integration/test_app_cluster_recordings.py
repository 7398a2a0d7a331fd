"""The recordings endpoints of an app cluster (``--redis`` with
``--record-dir``): a room is recorded on the node that owns it, and its host's
recording token was issued there, so a request through another node for a
live room is redirected (307, method kept) to the owner, as a join is. Two
app processes, one real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ..example_server import HOST_KEY, RunningExample, example_server, free_port
from ..ws_client import create_room, join
from .test_app_cluster import TTL


@pytest.fixture
async def recording_nodes(
    redis_server: Any, tmp_path: Path
) -> AsyncIterator[tuple[RunningExample, RunningExample]]:
    """Nodes A and B, each recording into its own directory."""
    port_a, port_b = free_port(), free_port()

    def node(port: int, name: str) -> Any:
        return example_server(
            f"--redis={redis_server.url}",
            f"--node-url=http://127.0.0.1:{port}",
            f"--node-ttl={TTL}",
            f"--record-dir={tmp_path / name}",
            port=port,
            log=tmp_path / f"node-{name}.log",
        )

    async with node(port_a, "a") as a, node(port_b, "b") as b:
        yield a, b


async def test_recordings_of_a_room_owned_elsewhere_redirect_to_its_node(
    recording_nodes: tuple[RunningExample, RunningExample],
) -> None:
    a, b = recording_nodes
    async with aiohttp.ClientSession() as http:
        status, room = await create_room(http, str(a))
        assert status == 201, room
        status, grant = await join(http, room["join_url"], role="host")
        assert status == 200, grant
        token = grant["recording"]["token"]  # issued by A, valid there only
        path = URL(room["join_url"]).raw_path.replace("/r/", "/api/rooms/")
        headers = {"Authorization": f"Bearer {token}"}
        for method, tail in (
            ("GET", "/recordings"),
            ("GET", "/recordings/x.webm"),
            ("DELETE", "/recordings/x.webm"),
        ):
            url = f"{b}{path}{tail}"
            async with http.request(
                method, url, headers=headers, allow_redirects=False
            ) as response:
                assert response.status == 307, (method, tail, response.status)
                location = response.headers["Location"]
            assert URL(location) == URL(f"{a}{path}{tail}")
            # the client re-sends its token to the owner (a redirect to
            # another origin drops the Authorization header)
            async with http.request(method, location, headers=headers) as response:
                assert response.status == (200 if tail == "/recordings" else 404)
        async with http.get(f"{a}{path}/recordings", headers=headers) as response:
            assert (await response.json())["recordings"] == []
        # A itself answers: its own room, no redirect; a wrong token is refused
        async with http.get(
            f"{a}{path}/recordings",
            headers={"Authorization": "Bearer nope"},
            allow_redirects=False,
        ) as response:
            assert response.status == 401
        # a room nobody owns is answered where asked (a host key on B)
        async with http.get(
            f"{b}/api/rooms/no-such-room/recordings",
            headers={"Authorization": f"Bearer {HOST_KEY}"},
            allow_redirects=False,
        ) as response:
            assert response.status == 200
            assert (await response.json())["recordings"] == []
