"""werift, a third independent WebRTC stack (TypeScript), in the flagship room.

A browser host (Chromium or Firefox) opens a room of examples/ws_sfu.py; a
werift client (``werift/client.mjs``, written from docs/websocket-protocol.md)
joins with
the host's link, publishes a GStreamer test pattern (VP8) and tone (Opus), and
receives the host's media. The browser must decode werift's detailed, moving
picture and hear its tone; werift must receive the host's VP8 video (whole
frames and key frames with a size) and audio; the server must drop no packet
for its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .browser.harness import HOST_KEY, LIVENESS, Browser, Server, wait_for
from .firefox import Firefox
from .observe import assert_none_dropped_for_size, assert_sees_and_hears
from .rooms import AnyUser, ChromiumUser, host_a_room

pytestmark = [pytest.mark.interop, pytest.mark.gstreamer]

CLIENT_DIR = Path(__file__).resolve().parent / "werift"
WHIP_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "whip_sfu.py"


@dataclass
class WeriftClient:
    """A running werift script (``client.mjs`` or ``whip_publish.mjs``) and
    what it reported."""

    process: asyncio.subprocess.Process = field(repr=False)
    participant_id: str | None = None
    #: the WHIP session resource (whip_publish.mjs)
    resource: str | None = None
    states: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: (publishing participant, kind) -> the latest counts
    received: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    async def read_reports(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print("werift:", line.decode(errors="replace").rstrip())
                continue
            if event["event"] == "joined":
                self.participant_id = event["participant_id"]
            elif event["event"] == "published":
                self.resource = event["resource"]
            elif event["event"] == "connection":
                self.states.append(event["state"])
            elif event["event"] == "received":
                self.received[event["from"], event["kind"]] = event
            elif event["event"] == "error":
                self.errors.append(event["message"])

    def counts(self, sender: str, kind: str) -> dict[str, Any]:
        return self.received.get((sender, kind), {})


@contextlib.asynccontextmanager
async def werift_client(script: str, *arguments: str) -> AsyncIterator[WeriftClient]:
    """``node werift/<script> arguments...``, stopped (with its GStreamer) at
    the end."""
    node = shutil.which("node")
    if node is None or not (CLIENT_DIR / "node_modules" / "werift").is_dir():
        pytest.fail(f"node or werift is missing (npm ci in {CLIENT_DIR})")
    if shutil.which("gst-launch-1.0") is None:
        pytest.fail("gst-launch-1.0 is missing (apt-get install gstreamer1.0-tools)")
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / script),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        cwd=CLIENT_DIR,
        start_new_session=True,  # its gst-launch-1.0 is in its process group
    )
    client = WeriftClient(process)
    reader = asyncio.create_task(client.read_reports())
    try:
        yield client
    finally:
        print(f"--- werift: states {client.states}, errors {client.errors}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), LIVENESS)
        finally:
            # whatever is left of the group (gst-launch-1.0) goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@pytest.mark.parametrize(
    ("host_browser", "packet_size"),
    [
        ("chromium", 1200),
        ("chromium", 1400),  # GStreamer's default packet size
        ("firefox", 1200),
    ],
)
async def test_werift_and_a_browser_see_and_hear_each_other(
    start_server: Any,
    browser: Browser,
    gecko: Firefox,
    host_browser: str,
    packet_size: int,
) -> None:
    server: Server = start_server()
    host: AnyUser = (
        ChromiumUser(await browser.user("Alice"))
        if host_browser == "chromium"
        else await gecko.user("Alice")
    )
    link = await host_a_room(host, server)
    async with werift_client("client.mjs", link, "werift", str(packet_size)) as guest:
        await host.wait_status("connected")
        assert guest.participant_id is not None, guest.errors
        host_id = await host.participant_id()

        # the host decodes werift's picture and hears its tone
        await assert_sees_and_hears(host, guest.participant_id, "werift")

        # werift receives the host's video, whole frames and key frames
        def details() -> str:
            return f"werift received {guest.received}, errors {guest.errors}"

        async def receives() -> bool:
            video = guest.counts(host_id, "video")
            audio = guest.counts(host_id, "audio")
            return bool(
                video.get("frames", 0) >= 30
                and video.get("keyframes", 0) >= 1
                and video.get("width", 0) > 0
                and audio.get("packets", 0) >= 50
            )

        await wait_for(receives, "werift to receive Alice's media", details=details)
        assert guest.states[-1] == "connected", guest.states
        assert_none_dropped_for_size(server.base_url)


async def test_werift_publishes_with_whip_and_chromium_watches(
    start_server: Any, browser: Browser
) -> None:
    server: Server = start_server("--max-participants=2", script=WHIP_SCRIPT)
    endpoint = f"{server.base_url}/whip/studio"
    async with werift_client("whip_publish.mjs", endpoint, HOST_KEY, "1200") as pub:

        async def published() -> bool:
            return pub.resource is not None or bool(pub.errors)

        await wait_for(published, "werift's WHIP session")
        assert not pub.errors, pub.errors
        viewer = ChromiumUser(await browser.user("Bob"))
        await viewer.open(f"{server.base_url}/r/studio?name=Bob")
        await viewer.wait_status("connected")

        async def publisher_id() -> str | None:
            tiles = await viewer.evaluate(
                "[...document.querySelectorAll('.tile.remote')]"
                ".map((tile) => tile.dataset.participant)"
            )
            return tiles[0] if tiles else None

        host = await wait_for(publisher_id, "Bob to see werift's tile")
        await assert_sees_and_hears(viewer, host, "werift's WHIP")
        assert pub.states[-1] == "connected", pub.states
        assert_none_dropped_for_size(server.base_url)
