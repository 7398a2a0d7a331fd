"""Simulcast from a WHIP publisher: Chromium offers its 1280x720 fake camera
as three encodings (sendEncodings with rids q, h, f), as a WHIP client does;
pysfu answers with ``a=simulcast:recv`` and learns the layers by rid; two
aiortc viewers in the room get different layers by their REMBs.

The SFU runs in this process; the offer goes to ``room.join(offer=...)`` as
the WHIP endpoint passes it (tests/interop/browser/test_browser_whip.py
covers the HTTP side).
"""

from __future__ import annotations

import time

from pysfu import SFU, DownTrack
from pysfu.config import ForwardingConfig, IceConfig, SFUConfig
from pysfu.forwarding.simulcast import SimulcastPolicy
from pysfu.peer.answering import ClientOffer, Purpose

from ...peers import Peer, ReceivedTrack
from .harness import LIVENESS, chromium
from .test_browser_simulcast import CapOnly, ForcedRemb, blank_page, eventually, no_remb

#: A WHIP client's offer: send-only audio and video, the video as three
#: encodings; resolves to the offer once ICE gathering is complete.
OFFER_JS = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true, video: {width: 1280, height: 720, frameRate: 30}});
  const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'});
  window.pub = {pc};
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: 'sendonly'});
  pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly',
    sendEncodings: [
      {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000},
      {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000},
      {rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000},
    ]});
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      pc.addEventListener('icegatheringstatechange',
        () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 5000);
    });
  }
  return pc.localDescription.sdp;
}
"""


async def _discard(_message: object) -> None:
    return None


async def test_a_whip_publishers_simulcast_layers_reach_viewers_by_estimate() -> None:
    sfu = SFU(
        SFUConfig(
            ice=IceConfig(host_addresses=("127.0.0.1",)),
            forwarding=ForwardingConfig(
                simulcast=True,
                remb_policy=CapOnly(),
                max_video_bitrate=3_000_000,
                # the layer moves are checked here, the probes, climbs and the
                # start-up grace in tests/unit/test_simulcast.py
                simulcast_policy=SimulcastPolicy(
                    probe_after=3600.0, climb_after=3600.0, start_grace=0.0
                ),
            ),
        )
    )
    room = sfu.create_room("whip-simulcast", max_participants=3)
    fast, slow = (
        Peer(name, code, publish_video=False, publish_audio=False, offer_filter=no_remb)
        for name, code in (("fast", 1), ("slow", 2))
    )
    forced: list[ForcedRemb] = []
    try:
        async with chromium() as browser, blank_page() as url:
            user = await browser.user("WHIP publisher")
            await user.page.goto(url)
            offer = str(await user.page.evaluate(OFFER_JS))
            assert "a=simulcast:send q;h;f" in offer
            publisher = await room.join(
                "pub",
                "participant",
                _discard,
                offer=ClientOffer(offer, Purpose.PUBLISH),
            )
            assert publisher.answerer is not None
            answer = publisher.answerer.answer
            assert answer is not None and "a=simulcast:recv q;h;f" in answer
            assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in answer
            await user.page.evaluate(
                "(sdp) => window.pub.pc.setRemoteDescription({type: 'answer', sdp})",
                answer,
            )
            await fast.join(room)
            await slow.join(room)

            await eventually(
                lambda: "pub/video" in publisher.publications, "publishing"
            )
            forwarder = publisher.publications["pub/video"]
            await eventually(
                lambda: (
                    len(forwarder.layers) == 3
                    and all(
                        layer.packets_received > 50
                        for layer in forwarder.layers.values()
                    )
                ),
                "three layers, learned by rid",
                state=lambda: (
                    forwarder.layers,
                    [layer.packets_received for layer in forwarder.layers.values()],
                    forwarder.stats,
                ),
            )
            assert forwarder.stats.unknown_ssrc == 0

            fast_video = await fast.wait_track("pub", "video", LIVENESS)
            slow_video = await slow.wait_track("pub", "video", LIVENESS)

            def size(track: ReceivedTrack) -> int:
                return track.size[0] if track.size else 0

            def layer(which: DownTrack) -> int:
                rid = which.stats.layer
                return -1 if rid is None else "qhf".index(rid)

            downtrack = room.members["slow"].subscriptions["pub/video"].downtrack
            fast_downtrack = room.members["fast"].subscriptions["pub/video"].downtrack
            forced = [
                ForcedRemb(fast, fast_downtrack.ssrc, 20_000_000),
                ForcedRemb(slow, downtrack.ssrc, 300_000),  # q fits, h does not
            ]
            await eventually(
                lambda: (
                    downtrack.stats.layer == "q"
                    and layer(fast_downtrack) > 0
                    and 0 < size(slow_video) < size(fast_video)
                ),
                "the slow viewer on the smallest layer, the other on a larger one",
                state=lambda: (
                    downtrack.stats.layer,
                    fast_downtrack.stats.layer,
                    slow_video.size,
                    fast_video.size,
                    forwarder.layer_bitrates(int(time.monotonic() * 1000)),
                ),
            )
    finally:
        for each in forced:
            each.stop()
        await fast.close()
        await slow.close()
        await sfu.close()
