"""The host's side of admission in the browser: the ``host_url`` that
``POST /api/rooms`` answers opens the room as host in a fresh browser (no
host key in it), once: a single-use, short-lived ticket in the URL fragment,
never the long-lived host key. And the host sees who waits to join and can
refuse them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from playwright.async_api import expect

from .harness import HOST_KEY, LIVENESS, Browser


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


async def test_the_host_sees_who_waits_and_refuses_them(
    start_server: Any, browser: Browser
) -> None:
    server = start_server("--pending-hold=30")  # it still waits when refused
    created = await server.post("/api/rooms", {}, host_key=HOST_KEY)
    host = await browser.user("Alice")
    await host.open(created.body["host_url"])
    await host.wait_status("waiting for the participant")
    # a client takes the only seat and never connects
    room = created.body["room"]
    squatter = await server.post(f"/api/rooms/{quote(room)}/join", {"name": "Sly"})
    assert squatter.status == 200
    waiting = host.page.locator("#waiting-list li")
    await expect(waiting).to_have_text(["Sly Refuse"], timeout=LIVENESS * 1000)
    blocked = await server.post(f"/api/rooms/{quote(room)}/join", {"name": "Bob"})
    assert (blocked.status, blocked.body["error"]) == (409, "room_full")
    await waiting.get_by_role("button", name="Refuse").click()
    await expect(host.page.locator("#waiting")).to_be_hidden(timeout=LIVENESS * 1000)
    guest = await browser.user("Bob")
    await guest.open(created.body["join_url"] + "?name=Bob")
    await guest.wait_status("connected")
    await host.wait_status("connected")
