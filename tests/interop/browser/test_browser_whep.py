"""Stock Chromium at its default codec preferences on both ends of WHIP/WHEP:
examples/static/whip.html publishes, a plain WHEP client (no
``setCodecPreferences``, as a user would write one) watches and decodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ...whip_client import ROOT
from .harness import HOST_KEY, LIVENESS, Browser, Server

WHIP_SCRIPT = ROOT / "examples" / "whip_sfu.py"

#: A minimal WHEP viewer (draft-ietf-wish-whep): recvonly video and audio,
#: the offer POSTed once ICE gathering completed, the answer applied; its
#: error is returned, so the test shows why Chromium refused an answer.
WHEP_VIEWER = """
// --8<-- [start:viewer]
async ({url, token}) => {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  const audio = document.createElement("audio");
  audio.autoplay = true;
  document.body.append(audio);
  pc.ontrack = ({ track }) => {
    (track.kind === "video" ? video : audio).srcObject = new MediaStream([track]);
  };
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === "complete") resolve();
      };
    });
  }
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) return `${response.status}: ${answer}`;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (error) {
    return `the answer was refused: ${error}`;
  }
  window.whep = { pc, video };
  return "";
}
// --8<-- [end:viewer]
"""

#: What the viewer decoded: frames and audio so far, the picture's size, and
#: a 16x12 grey thumbnail of the current frame (to see that it moves).
WHEP_SEEN = """
async () => {
  const { pc, video } = window.whep;
  const seen = { frames: 0, audioSamples: 0, width: video.videoWidth,
                 height: video.videoHeight, thumbnail: [] };
  (await pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") seen.frames = s.framesDecoded || 0;
    if (s.kind === "audio") seen.audioSamples = s.totalSamplesReceived || 0;
  });
  if (video.videoWidth) {
    const canvas = document.createElement("canvas");
    canvas.width = 16;
    canvas.height = 12;
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0, 16, 12);
    const data = context.getImageData(0, 0, 16, 12).data;
    for (let i = 0; i < data.length; i += 4) {
      seen.thumbnail.push(Math.round((data[i] + data[i + 1] + data[i + 2]) / 3));
    }
  }
  return seen;
}
"""


async def test_stock_chromium_watches_a_stock_chromium_publisher_over_whep(
    start_server: Callable[..., Server], browser: Browser
) -> None:
    """Chromium offers payload types 35-63 as well as 96-127 and VP9 in four
    profiles; pysfu's WHEP answer once listed payload types twice, and
    Chromium refused it. Both ends use Chromium's defaults here."""
    server = start_server("--max-participants=2", script=WHIP_SCRIPT)
    publisher = await browser.user("WHIP publisher")
    await publisher.open(f"{server.base_url}/publish#room=studio&key={HOST_KEY}")
    await publisher.page.click("#publish")
    await publisher.wait_status("publishing")

    reply = await server.post("/api/rooms/studio/join", {"role": "participant"})
    assert reply.status == 200, reply.body
    viewer = await browser.user("WHEP viewer")
    await viewer.open(f"{server.base_url}/publish")  # any page of the server
    problem = await viewer.page.evaluate(
        WHEP_VIEWER,
        {
            "url": f"{server.base_url}/whep/studio",
            "token": reply.body["ice"]["password"],
        },
    )
    assert problem == ""

    thumbnails: list[list[int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS
    seen: dict[str, Any] = {}
    while len(thumbnails) < 2 or seen["frames"] < 30 or not seen["audioSamples"]:
        assert loop.time() < deadline, f"the viewer decoded too little: {seen}"
        await asyncio.sleep(0.5)
        seen = await viewer.page.evaluate(WHEP_SEEN)
        if seen["thumbnail"] and seen["thumbnail"] not in thumbnails:
            thumbnails.append(seen["thumbnail"])
    # Chromium's fake camera, as the publisher captures it, and moving
    captured = await publisher.page.evaluate(
        "(() => { const v = document.getElementById('local-video');"
        " return [v.videoWidth, v.videoHeight]; })()"
    )
    assert [seen["width"], seen["height"]] == captured
    assert max(max(t) for t in thumbnails) > 64  # not a black picture
