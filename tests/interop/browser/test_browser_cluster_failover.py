"""Failover in real Chromium: ``kill -9`` of the node that holds a room.

A redis-server and two app nodes (``--redis --node-url``, 5 s TTL), a host
and a guest on the packaged page in a room of node A, another pair in a room
of node B. Node A is killed with SIGKILL: the pair of A rejoins through B by
itself (the page shows "reconnecting", then "connected") and each again
decodes the other's video; the pair of B never notices. No timing is
asserted, every wait is the liveness bound. Screenshots of the states are
saved in the test's tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ...redis_server import RedisServer
from .harness import (
    HOST_KEY,
    LIVENESS,
    METRICS_TOKEN,
    ROOT,
    SERVER_SCRIPT,
    Browser,
    Server,
    User,
    free_port,
    log_tail,
    wait_for,
)

#: As the cluster tests: a dead node's rooms are free after at most this.
TTL = 5.0

#: Whether the page decodes the video of participant ``id``: its tile's
#: video has a size and its playback advances (tiles of a call that ended are
#: removed, so this is a track of the current call).
DECODES = """async (id) => {
  const video = document.querySelector(`.tile.remote[data-participant="${id}"] video`);
  if (!video || !video.videoWidth) return false;
  const before = video.currentTime;
  await new Promise((resolve) => setTimeout(resolve, 700));
  return video.currentTime > before;
}"""


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Server]]:
    """Nodes A and B, app processes stopped by their pids (A may be killed)."""
    from ...example_server import stop_process

    started: list[Server] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = tmp_path / f"node-{name}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        str(SERVER_SCRIPT),
                        "--bind=127.0.0.1",
                        f"--port={port}",
                        f"--host-key={HOST_KEY}",
                        f"--metrics-token={METRICS_TOKEN}",
                        "--ice-address=127.0.0.1",
                        f"--redis={redis_server.url}",
                        f"--node-url={url}",
                        f"--node-ttl={TTL}",
                    ],
                    cwd=ROOT,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            started.append(Server(url, process, log))
            started[-1].wait_until_serving()
        yield started
    finally:
        for server in started:
            stop_process(server.process)
            print(f"--- {server.log.name}\n{log_tail(server.log)}")


def live_nodes(server: Server) -> int:
    """The cluster's live nodes as ``server``'s last refresh saw them."""
    return int(server.metric("pysfu_cluster_nodes_live") or 0)


async def pair_in_a_room(
    browser: Browser, server: Server, host_name: str, guest_name: str
) -> tuple[User, User]:
    """A host who created a room on ``server`` and a guest, both connected."""
    host = await browser.user(host_name)
    await host.open(f"{server.base_url}/new?name={host_name}#key={HOST_KEY}")
    await host.page.wait_for_url("**/r/**", timeout=LIVENESS * 1000)
    await host.wait_status("waiting for the participant")
    guest = await browser.user(guest_name)
    link = await host.page.locator("#join-link").input_value()
    await guest.open(f"{link}?name={guest_name}")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    return host, guest


async def decode_each_other(first: User, second: User) -> None:
    for viewer, seen in ((first, second), (second, first)):
        seen_id = await seen.participant_id()

        async def decodes(viewer: User = viewer, seen_id: str = seen_id) -> bool:
            return bool(await viewer.page.evaluate(DECODES, seen_id))

        await wait_for(decodes, f"{viewer.name} decoding {seen_id}'s video")


async def screenshot(users: list[User], path: Path, state: str) -> None:
    for user in users:
        await user.page.screenshot(path=path / f"{state}-{user.name}.png")


async def test_a_killed_nodes_pages_rejoin_through_another_node(
    nodes: list[Server], browser: Browser, tmp_path: Path
) -> None:
    a, b = nodes
    await wait_for(
        lambda: _async(lambda: live_nodes(a) == live_nodes(b) == 2),
        "both nodes seeing the two",
    )
    carol, dave = await pair_in_a_room(browser, b, "Carol", "Dave")
    alice, bob = await pair_in_a_room(browser, a, "Alice", "Bob")
    for user in (alice, bob):
        answer = await user.join_response()
        assert answer["cluster"]["nodes"] == [b.base_url]
        assert answer["ws_url"].startswith(a.base_url.replace("http", "ws", 1))
    assert (await alice.join_response())["host_rejoin"]
    await decode_each_other(alice, bob)
    await decode_each_other(carol, dave)
    before = {
        user.name: await user.page.evaluate("window.pysfu.statusHistory()")
        for user in (carol, dave)
    }
    await screenshot([alice, bob], tmp_path, "1-connected")

    shown = {
        user.name: len(await user.page.evaluate("window.pysfu.statusHistory()"))
        for user in (alice, bob)
    }
    os.kill(a.process.pid, signal.SIGKILL)  # node A dies, nothing said
    killed = time.monotonic()
    a.process.wait(timeout=LIVENESS)

    async def rejoining(user: User) -> bool:
        history = await user.page.evaluate("window.pysfu.statusHistory()")
        return "reconnecting" in history[shown[user.name] :]

    for user in (alice, bob):
        await wait_for(lambda user=user: rejoining(user), f"{user.name} reconnecting")
    await screenshot([alice, bob], tmp_path, "2-reconnecting")
    # the page's own failover (after the node refused the socket): shown as
    # "reconnecting to another server"; pictured if not already over
    for user in (alice, bob):
        await wait_for(
            lambda user=user: user.page.evaluate(
                "document.querySelector('#status.rejoining') !== null"
                " || window.pysfu.rejoins > 0"
            ),
            f"{user.name} rejoining",
        )
        if await user.page.locator("#status.rejoining").count():
            await screenshot([user], tmp_path, "2b-rejoining")

    # by themselves, through B, as they were (the host still the host)
    for user in (alice, bob):
        await wait_for(
            lambda user=user: user.page.evaluate("window.pysfu.rejoins === 1"),
            f"{user.name} rejoined through B",
        )
        await user.wait_status("connected")
        print(
            f"{user.name} connected again"
            f" {time.monotonic() - killed:.1f} s after the kill"
        )
        answer = await user.join_response()
        assert answer["ws_url"].startswith(b.base_url.replace("http", "ws", 1))
        assert answer["name"] == user.name
    assert (await alice.join_response())["role"] == "host"
    # the host's link now names the room's new node
    link = await alice.page.locator("#join-link").input_value()
    assert link.startswith(f"{b.base_url}/r/")
    assert (await bob.join_response())["role"] == "participant"
    await decode_each_other(alice, bob)
    await screenshot([alice, bob], tmp_path, "3-rejoined")

    # the room of B never noticed: same call, no status change, media flows
    for user in (carol, dave):
        assert await user.page.evaluate("window.pysfu.rejoins") == 0
        history = await user.page.evaluate("window.pysfu.statusHistory()")
        assert history == before[user.name]
        assert await user.page.locator("#status").text_content() == "connected"
    await decode_each_other(carol, dave)


async def _async(check: Any) -> Any:
    return check()
