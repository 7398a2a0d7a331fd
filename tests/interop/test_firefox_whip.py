"""Firefox over WHIP and WHEP (examples/whip_sfu.py), with Chromium.

A browser publishes its camera and microphone with the page at ``/publish``
(WHIP); the other watches, in the room page (the WebSocket protocol) or with
a minimal WHEP viewer (``whep_viewer.js``). The viewer must decode the
publisher's detailed, moving picture and hear its sound; the server must
drop no packet for its size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .browser.harness import HOST_KEY, Browser, Server, wait_for
from .firefox import Firefox
from .observe import assert_none_dropped_for_size, assert_sees_and_hears
from .rooms import AnyUser, ChromiumUser

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
WHIP_SCRIPT = ROOT / "examples" / "whip_sfu.py"
WHEP_VIEWER = (Path(__file__).resolve().parent / "whep_viewer.js").read_text()
ROOM = "studio"


@dataclass
class WhepViewer:
    """A page watching a room with ``whep_viewer.js``."""

    user: AnyUser

    @property
    def name(self) -> str:
        return f"{self.user.name} (WHEP)"

    async def evaluate(self, expression: str) -> Any:
        return await self.user.evaluate(expression)

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.user.evaluate("window.whepStats()")
        return result


async def publish_with_whip(publisher: AnyUser, server: Server) -> None:
    """``publisher`` opens /publish and publishes as the host of ROOM."""
    await publisher.open(f"{server.base_url}/publish#room={ROOM}&key={HOST_KEY}")
    await publisher.evaluate("document.getElementById('publish').click()")
    await publisher.wait_status("publishing")


async def watch_with_whep(viewer: AnyUser, server: Server) -> WhepViewer:
    await viewer.open(f"{server.base_url}/")
    script = f"({WHEP_VIEWER})({json.dumps(ROOM)}, {json.dumps(HOST_KEY)})"
    location = await viewer.evaluate(script)
    assert location, "no WHEP session resource"
    return WhepViewer(viewer)


async def test_firefox_publishes_with_whip_and_chromium_watches_the_room(
    start_server: Any, browser: Browser, gecko: Firefox
) -> None:
    server = start_server("--max-participants=2", script=WHIP_SCRIPT)
    publisher = await gecko.user("Alice")
    await publish_with_whip(publisher, server)

    viewer = ChromiumUser(await browser.user("Bob"))
    await viewer.open(f"{server.base_url}/r/{ROOM}?name=Bob")
    await viewer.wait_status("connected")

    async def publisher_id() -> str | None:
        tiles = await viewer.evaluate(
            "[...document.querySelectorAll('.tile.remote')]"
            ".map((tile) => tile.dataset.participant)"
        )
        return tiles[0] if tiles else None

    host = await wait_for(publisher_id, "Bob to see the WHIP host's tile")
    video = await assert_sees_and_hears(viewer, host, "Firefox's WHIP")
    print(f"Bob decodes Firefox's WHIP {video['codec']}")
    assert_none_dropped_for_size(server.base_url)


@pytest.mark.parametrize("publisher_browser", ["chromium", "firefox"])
async def test_firefox_watches_a_whip_publisher_with_whep(
    start_server: Any, browser: Browser, gecko: Firefox, publisher_browser: str
) -> None:
    server = start_server("--max-participants=2", script=WHIP_SCRIPT)
    publisher: AnyUser = (
        ChromiumUser(await browser.user("Alice"))
        if publisher_browser == "chromium"
        else await gecko.user("Alice")
    )
    await publish_with_whip(publisher, server)

    viewer = await watch_with_whep(await gecko.user("Bob"), server)
    video = await assert_sees_and_hears(viewer, "whep", f"{publisher_browser}'s WHIP")
    print(f"Firefox's WHEP viewer decodes {publisher_browser}'s {video['codec']}")
    assert_none_dropped_for_size(server.base_url)
