"""The room page as people see it, state by state, in Chromium: what is shown
and hidden, the emoji of the room in its link and title, controls on screen
with 1, 2 and 5 tiles, end states with a next step, and a participant whose
tab reloads or closes leaving at once. Each state is also saved as a
screenshot (to $PYSFU_SCREENSHOTS, or the test's temporary directory) for a
person to look at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from .harness import HOST_KEY, LIVENESS, Browser, User
from .test_browser_room import assert_tiles, open_as_host, open_as_participant


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PYSFU_SCREENSHOTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


async def shoot(user: User, shots: Path, name: str) -> None:
    await user.page.screenshot(path=str(shots / f"{name}.png"))


async def assert_on_screen(user: User, selector: str) -> None:
    """``selector`` is visible within the viewport, without scrolling."""
    box = await user.page.locator(selector).bounding_box()
    viewport = user.page.viewport_size
    assert box is not None and viewport is not None
    assert box["y"] + box["height"] <= viewport["height"], (selector, box, viewport)


async def test_the_page_in_each_state_of_a_call(
    start_server: Any, browser: Browser, shots: Path
) -> None:
    server = start_server("--max-participants=4", "--reconnect-grace=300")
    home = await browser.user("Visitor")
    await home.open(server.base_url)
    await expect(home.page.locator("#home")).to_be_visible()
    await expect(home.page.locator("#share")).to_be_hidden()
    await shoot(home, shots, "01-home")

    host = await open_as_host(browser, server)
    link = await host.page.locator("#join-link").input_value()
    assert "%F0" not in link and any(ord(c) > 0x2000 for c in link), link
    room = link.rsplit("/", 1)[1]
    assert room in await host.page.title()
    await assert_on_screen(host, "#controls")
    await shoot(host, shots, "02-host-alone")

    guests = [await open_as_participant(browser, host, "Bob")]
    await guests[0].wait_status("connected")
    # a guest sees no "Link for the participant" box, only the call
    await expect(guests[0].page.locator("#share")).to_be_hidden()
    await expect(guests[0].page.locator("#controls")).to_be_visible()
    assert room in await guests[0].page.title()
    await assert_on_screen(host, "#controls")
    await shoot(host, shots, "03-host-with-one")
    await shoot(guests[0], shots, "04-guest")

    for name in ("Carol", "Dave", "Erin"):
        guests.append(await open_as_participant(browser, host, name))
    await assert_tiles(host, "Bob", "Carol", "Dave", "Erin")
    await assert_on_screen(host, "#controls")
    await shoot(host, shots, "05-host-with-four")

    # a fifth participant finds the room full, and is told what to do
    late = await open_as_participant(browser, host, "Frank")
    await late.wait_status("room full")
    await expect(late.page.locator("#next-step")).to_be_visible()
    await expect(late.page.locator("#tiles")).to_be_hidden()
    await shoot(late, shots, "06-room-full")

    # a participant reloading its page leaves at once and comes back (the
    # page sends "leave" with rejoin on pagehide; Chromium also closes its
    # DTLS association): its seat is kept for it meanwhile (the guests'
    # grace), and the reloaded page takes it back with its seat_rejoin
    erin = guests[-1]
    await erin.page.reload()
    await erin.wait_status("connected")
    await assert_tiles(host, "Bob", "Carol", "Dave", "Erin")
    await guests.pop().page.close()
    await assert_tiles(host, "Bob", "Carol", "Dave")

    await host.page.click("#leave")
    await host.wait_status("left")
    await expect(host.page.locator("#next-step")).to_have_text("Rejoin")
    await shoot(host, shots, "07-host-left-self")
    await guests[0].wait_status("host left")
    await expect(guests[0].page.locator("#next-step")).to_have_text("Start a new room")
    await expect(guests[0].page.locator("#tiles")).to_be_hidden()
    await shoot(guests[0], shots, "08-host-left")

    intruder = await browser.user("Intruder")
    await intruder.open(f"{link}?role=host")
    await intruder.wait_status(
        "error: no host key: start the room from /new#key=<host key>"
    )
    await expect(intruder.page.locator("#ended-text")).to_contain_text(
        "Participants join with the link the host shares"
    )
    await shoot(intruder, shots, "09-host-link-without-key")
    wrong = await browser.user("Wrong")
    await wrong.open(f"{server.base_url}/new#key=wrong-{HOST_KEY}")
    await wrong.wait_status("error: wrong host key", timeout=LIVENESS)
    await expect(wrong.page.locator("#next-step")).to_be_visible()
    await shoot(wrong, shots, "10-wrong-key")
