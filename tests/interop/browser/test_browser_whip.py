"""Chromium publishes with WHIP from src/pysfu/app/static/whip.html; a WebSocket-room
participant (an aiortc client of the room protocol) decodes its video."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp
from playwright.async_api import expect

from pysfu.signalling import Joined

from ...helpers import eventually
from ...peers import Peer
from ...whip_client import ROOT
from ...ws_client import WsClient, join
from .harness import HOST_KEY, LIVENESS, Browser, Server

WHIP_SCRIPT = ROOT / "examples" / "whip_sfu.py"


async def test_chromium_publishes_with_whip_into_a_websocket_room(
    start_server: Callable[..., Server], browser: Browser
) -> None:
    server = start_server("--max-participants=2", script=WHIP_SCRIPT)
    publisher = await browser.user("WHIP publisher")
    await publisher.open(f"{server.base_url}/publish#room=studio&key=wrong")
    status = publisher.page.locator("#status")

    # a wrong token is refused, and the page says why
    await publisher.page.click("#publish")
    await expect(status).to_have_text(
        re.compile(r"^refused: 401 unknown token"), timeout=LIVENESS * 1000
    )
    await publisher.page.fill("#token", HOST_KEY)
    await publisher.page.click("#publish")
    await publisher.wait_status("publishing")
    link = publisher.page.locator("#room-link")
    await expect(link).to_have_text(f"{server.base_url}/r/studio")

    async def encoding() -> bool:
        stats = await publisher.page.evaluate("window.pysfuWhip.stats()")
        return any(s["framesEncoded"] > 10 for s in stats["outbound"])

    deadline = asyncio.get_running_loop().time() + LIVENESS
    while not await encoding():
        assert asyncio.get_running_loop().time() < deadline, "Chromium never encoded"
        await asyncio.sleep(0.25)

    # a room participant joins over the WebSocket protocol and decodes the
    # WHIP host's camera (Chromium's fake camera: no pattern to read, so
    # decoded frames count) and receives its microphone
    async with aiohttp.ClientSession() as http:
        status_code, grant = await join(http, f"{server.base_url}/r/studio")
        assert status_code == 200, grant
        guest = Peer(grant["participant_id"], 2)
        try:
            ws = await http.ws_connect(grant["ws_url"])
            client = WsClient(ws, grant["ice"]["password"])
            await client.hello(grant["signalling_token"])
            guest.attach(client)
            await eventually(lambda: guest.saw(Joined), what="joined")
            (whip_host,) = guest.saw(Joined)[0].participants
            assert whip_host["role"] == "host"
            host = whip_host["participant_id"]
            video = await guest.wait_track(host, "video", timeout=LIVENESS)
            audio = await guest.wait_track(host, "audio", timeout=LIVENESS)
            await eventually(
                lambda: video.frames >= 30 and audio.frames >= 50,
                timeout=LIVENESS,
                what="Chromium's video decoded and audio received",
            )

            # Stop: the page DELETEs its session; the participant's tracks end
            await publisher.page.click("#stop")
            await publisher.wait_status("stopped")
            await asyncio.wait_for(video.ended.wait(), LIVENESS)
        finally:
            await guest.close()
