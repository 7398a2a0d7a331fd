"""The ``host_url`` that ``POST /api/rooms`` answers opens the room as host in
a fresh browser (no host key in it), once: a single-use, short-lived ticket
in the URL fragment, never the long-lived host key."""

from __future__ import annotations

from typing import Any

from .harness import HOST_KEY, Browser


async def test_the_host_url_opens_the_room_once_in_a_fresh_browser(
    start_server: Any, browser: Browser
) -> None:
    server = start_server()
    created = await server.post("/api/rooms", {}, host_key=HOST_KEY)
    assert created.status == 201
    host_url = created.body["host_url"]
    # someone who never saw the host key opens the link the API returned
    host = await browser.user("Alice")
    await host.open(host_url)
    await host.wait_status("waiting for the participant")
    assert HOST_KEY not in host_url and "#ticket=" in host_url
    assert "ticket=" not in host.page.url, "the ticket leaves the address bar"
    assert (await host.join_response())["role"] == "host"
    guest = await browser.user("Bob")
    await guest.open(created.body["join_url"] + "?name=Bob")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    # the same link, opened again elsewhere, is spent
    again = await browser.user("Mallory")
    await again.open(host_url)
    await again.wait_status("error: wrong host key")
