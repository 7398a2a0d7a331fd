"""The room page in Firefox, state by state: a Firefox host alone, with a
Chromium guest, and the guest's page once the host left; each asserted as a
user sees it and saved as a screenshot (to $PYSFU_SCREENSHOTS, or the test's
temporary directory)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from .browser.harness import Browser, wait_for
from .firefox import Firefox
from .rooms import ChromiumUser, host_a_room

pytestmark = pytest.mark.interop

SHOWN = "(id) => getComputedStyle(document.getElementById(id)).display !== 'none'"


async def shown(user: Any, element: str) -> bool:
    return bool(await user.evaluate(f"({SHOWN})('{element}')"))


async def test_the_page_in_firefox(
    start_server: Any, browser: Browser, gecko: Firefox, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("PYSFU_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    server = start_server()
    host = await gecko.user("Alice")
    link = await host_a_room(host, server)
    # the link shows the room's emoji, not %F0%9F...
    assert "%F0" not in link and any(ord(c) > 0x2000 for c in link), link
    assert link.rsplit("/", 1)[1] in await host.evaluate("document.title")
    await host.screenshot(shots / "firefox-01-host-alone.png")

    guest = await gecko.user("Bob")
    await guest.open(f"{link}?name=Bob")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    assert not await shown(guest, "share")  # no empty link box for guests
    assert await shown(guest, "controls")
    await host.screenshot(shots / "firefox-02-host-with-guest.png")
    await guest.screenshot(shots / "firefox-03-guest.png")

    chromium_guest = ChromiumUser(await browser.user("Carol"))
    await chromium_guest.open(f"{link}?name=Carol")
    await chromium_guest.wait_status("room full")

    await host.evaluate("document.getElementById('leave').click()")
    await guest.wait_status("host left")
    assert await shown(guest, "ended") and not await shown(guest, "tiles")
    assert (
        await guest.evaluate("document.getElementById('next-step').textContent")
        == "Start a new room"
    )
    await guest.screenshot(shots / "firefox-04-host-left.png")


async def test_a_firefox_guest_while_the_host_reloads(
    start_server: Any, browser: Browser, gecko: Firefox, tmp_path: Path
) -> None:
    """A Chromium host presses F5 (its reloaded page's join held a while):
    the Firefox guest's page says the host is reconnecting, then shows the
    host again; the room never closed."""
    shots = Path(os.environ.get("PYSFU_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    server = start_server("--host-grace=300")
    host = ChromiumUser(await browser.user("Alice"))
    link = await host_a_room(host, server)
    guest = await gecko.user("Bob")
    await guest.open(f"{link}?name=Bob")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    first = await host.participant_id()

    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    page = host.user.page
    await page.route("**/api/rooms/*/join", hold)
    await page.reload()
    await guest.wait_status("host reconnecting…")
    assert await shown(guest, "host-away")
    await guest.screenshot(shots / "host-reconnecting-firefox.png")
    release.set()  # this and later joins go through

    await host.wait_status("connected")
    await guest.wait_status("connected")
    assert not await shown(guest, "host-away")
    second = await host.participant_id()
    assert second != first

    async def decoding_the_host() -> bool:
        stats = await guest.stats()
        return any(
            s["kind"] == "video" and s["participant"] == second and s["framesDecoded"]
            for s in stats["inbound"]
        )

    await wait_for(decoding_the_host, "Firefox decoding the host that came back")
    assert "closed:" not in server.log.read_text()
