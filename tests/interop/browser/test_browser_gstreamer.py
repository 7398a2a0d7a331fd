"""Two independent WebRTC stacks around pysfu: GStreamer publishes, Chromium watches.

A GStreamer ``webrtcbin`` publishes a solid colour and a tone over WHIP
(``tests/gst/whip_publish.py``) as the host of a room of
``examples/whip_sfu.py``; a participant opens the room's page in Chromium.
The page must show the publisher's colour and receive its audio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ...gst_clients import COLOR, close_to, gst_clients, publish
from ...gst_clients import wait_for as wait_for_client
from ...whip_client import whip_server
from .harness import Browser, wait_for

pytestmark = pytest.mark.gstreamer

#: The mean colour of the first remote video tile (every 4th pixel), or null.
TILE_COLOR = """() => {
  const video = document.querySelector(".tile.remote video");
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const sum = [0, 0, 0];
  let n = 0;
  for (let i = 0; i < data.length; i += 16) {
    sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; n++;
  }
  return sum.map((s) => Math.round(s / n));
}"""


async def test_chromium_sees_and_hears_a_gstreamer_publisher(
    browser: Browser, tmp_path: Path
) -> None:
    async with whip_server("--slug=ascii", log=tmp_path / "whip_sfu.log") as base:
        with gst_clients(tmp_path) as gst:
            publisher = publish(gst, base, "gst-chromium")
            await wait_for_client(
                publisher,
                lambda: publisher.has("connection", state="connected"),
                "the GStreamer publisher to connect",
            )
            viewer = await browser.user("Bob")
            await viewer.open(f"{base}/r/gst-chromium?name=Bob")
            await viewer.wait_status("connected")

            seen: list[Any] = [None]

            async def colour() -> Any:
                seen[0] = await viewer.page.evaluate(TILE_COLOR)
                return seen[0] if close_to(seen[0], COLOR) else None

            await wait_for(
                colour,
                "Bob's page to show the publisher's colour",
                details=lambda: f"the tile's colour: {seen[0]}, expected {COLOR}",
            )

            async def hears() -> bool:
                stats = await viewer.stats()
                return any(
                    s["kind"] == "audio" and s.get("totalAudioEnergy", 0) > 0
                    for s in stats["inbound"]
                )

            await wait_for(hears, "Bob's page to play the publisher's tone")
