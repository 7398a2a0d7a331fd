"""A guest pressing F5 keeps its seat: its page reloads, joins again with the
seat rejoin credential it kept in sessionStorage, and the host sees the
guest's video again; meanwhile the seat is kept against a newcomer (the room
holds one participant). The guest's "Leave" frees the seat at once. In
Chromium; the host's page while the guest is away is saved as a screenshot
(to $PYSFU_SCREENSHOTS, or the test's temporary directory)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from .harness import Browser
from .test_browser_host_reload import RELOADS
from .test_browser_room import (
    assert_receives,
    assert_tiles,
    connected_pair,
    join_over_http,
)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PYSFU_SCREENSHOTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


async def test_the_guest_reloading_keeps_its_seat(
    start_server: Any, browser: Browser, shots: Path
) -> None:
    server = start_server("--guest-grace=300", "--log-level=INFO")
    host, guest = await connected_pair(browser, server)
    await assert_receives(host, guest)
    first = await guest.join_response()
    assert first["role"] == "participant" and first["seat_rejoin"]

    # the reloaded page's join is held: the seat is seen kept meanwhile
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    await guest.page.route("**/api/rooms/*/join", hold)
    await guest.page.reload()
    await host.wait_status("waiting for the participant")
    await assert_tiles(host)  # the guest's tile went
    await host.page.screenshot(path=str(shots / "guest-reloading-host-chromium.png"))
    refused = await join_over_http(server, host, "Carol")
    assert (refused.status, refused.body["error"]) == (409, "room_full")
    release.set()

    await guest.wait_status("connected")
    await host.wait_status("connected")
    second = await guest.join_response()
    assert second["participant_id"] != first["participant_id"]
    assert second["seat_rejoin"] not in (None, first["seat_rejoin"])  # rotated
    await assert_receives(host, guest)
    await assert_receives(guest, host)
    await assert_tiles(host, "Bob")

    timings = []
    for _ in range(RELOADS):  # F5 again, unheld: how long until video is back
        before = await guest.participant_id()
        started = time.monotonic()
        await guest.page.reload()
        while (await guest.page.evaluate("window.pysfu.joinResponse")) is None or (
            await guest.participant_id()
        ) == before:
            await asyncio.sleep(0.05)
        await assert_receives(host, guest)
        timings.append(time.monotonic() - started)
    print(f"guest reload to the host decoding the guest again: {timings} s")

    # the guest's "Leave" (not a reload) frees the seat at once
    await guest.page.click("#leave")
    await guest.wait_status("left")
    await host.wait_status("waiting for the participant")
    admitted = await join_over_http(server, host, "Carol")
    assert admitted.status == 200, admitted.body
    log = server.log.read_text()
    assert "its seat is kept 300 s" in log
    assert "a participant came back to its seat" in log
