"""Placement in real Chromium: a room started on a busy node opens on the
other one.

A redis-server and two app nodes (the failover test's). A host and a guest
on the packaged page in a room of node A make A the busier node; another host
starts a room from A's own ``/new`` page: the room is placed on B, the page
follows its ``host_url`` there (with the single-use host ticket: the host key
stays in A's session storage), its guest opens the room through A (redirected to
B), and the two see and hear each other on B.
"""

from __future__ import annotations

from ...integration.test_app_cluster import settled
from ...redis_server import RedisServer
from .harness import HOST_KEY, LIVENESS, Browser, Server, wait_for
from .test_browser_cluster_failover import (  # noqa: F401 (fixtures)
    _async,
    decode_each_other,
    live_nodes,
    nodes,
    pair_in_a_room,
)
from .test_browser_room import assert_receives


def participants_total(server: Server) -> int:
    """The cluster's participants as ``server``'s last refresh saw them."""
    return int(server.metric("pysfu_cluster_participants_total") or 0)


async def test_a_room_started_on_a_busy_node_opens_on_the_other(
    nodes: list[Server],  # noqa: F811 (the fixture imported above)
    browser: Browser,
    redis_server: RedisServer,
) -> None:
    a, b = nodes
    await wait_for(
        lambda: _async(lambda: live_nodes(a) == live_nodes(b) == 2),
        "both nodes seeing the two",
    )
    await settled(redis_server, 2)  # start-up CPU is no load
    # an even cluster: the node asked keeps the room
    alice, bob = await pair_in_a_room(browser, a, "Alice", "Bob")
    ws_a, ws_b = (n.base_url.replace("http", "ws", 1) for n in (a, b))
    assert (await alice.join_response())["ws_url"].startswith(ws_a)
    await wait_for(
        lambda: _async(lambda: participants_total(a) == 2),
        "A's two participants published",
    )

    # started from A's page, placed on B: the host's page went there
    carol = await browser.user("Carol")
    await carol.open(f"{a.base_url}/new?name=Carol#key={HOST_KEY}")
    await carol.page.wait_for_url(f"{b.base_url}/r/**", timeout=LIVENESS * 1000)
    await carol.wait_status("waiting for the participant")
    assert (await carol.join_response())["role"] == "host"
    link = await carol.page.locator("#join-link").input_value()
    assert link.startswith(f"{b.base_url}/r/")
    # the guest opens the room through A, which does not own it: redirected
    dave = await browser.user("Dave")
    await dave.open(f"{link.replace(b.base_url, a.base_url)}?name=Dave")
    await dave.wait_status("connected")
    await carol.wait_status("connected")
    assert dave.page.url.startswith(f"{b.base_url}/r/")
    for user in (carol, dave):
        assert (await user.join_response())["ws_url"].startswith(ws_b)
    # they see and hear each other there
    await assert_receives(carol, dave)
    await assert_receives(dave, carol)
    await decode_each_other(alice, bob)
