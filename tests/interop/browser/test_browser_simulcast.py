"""Simulcast end to end: Chromium publishes a 1280x720 fake camera as three
encodings (rids q, h, f) into a pysfu room; two aiortc viewers decode it.

A viewer whose REMB says 150 kbit/s is moved to a smaller layer (smaller
decoded frames) while the other keeps the top one; when its REMB rises it
moves back up; below the lowest layer its video stops and its audio goes on.
The SFU runs in this process; Chromium is signalled through page.evaluate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from pysfu import SFU, DownTrack, LayerChangedEvent
from pysfu.config import ForwardingConfig, IceConfig, SFUConfig
from pysfu.forwarding.simulcast import SimulcastPolicy
from pysfu.messages import Answer, Offer, VideoQuality
from pysfu.signalling.memory import MemoryClient, MemorySignalling

from ...peers import Peer, ReceivedTrack
from .harness import LIVENESS, chromium, free_port

#: Joins the room as the answerer of pysfu's offers: the first answer sends
#: the camera on the offered video section as three encodings.
ANSWER_JS = """
async (offer) => {
  if (!window.pub) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true, video: {width: 1280, height: 720, frameRate: 30}});
    const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'});
    window.pub = {pc, stream, published: false, rids: null};
  }
  const pub = window.pub;
  await pub.pc.setRemoteDescription({type: 'offer', sdp: offer});
  if (!pub.published) {
    pub.published = true;
    for (const t of pub.pc.getTransceivers()) {
      const kind = t.receiver.track.kind;
      const track = pub.stream.getTracks().find((x) => x.kind === kind);
      if (t.direction !== 'recvonly' || !track || t.sender.track) continue;
      t.direction = 'sendonly';
      await t.sender.replaceTrack(track);
      if (kind === 'video') {
        const params = t.sender.getParameters();
        const scale = {q: 4, h: 2, f: 1};
        const rate = {q: 150000, h: 500000, f: 1500000};
        for (const e of params.encodings) {
          if (e.rid in scale) {
            e.scaleResolutionDownBy = scale[e.rid];
            e.maxBitrate = rate[e.rid];
          }
        }
        await t.sender.setParameters(params);
        pub.rids = params.encodings.map((e) => e.rid || null);
      }
    }
  }
  await pub.pc.setLocalDescription(await pub.pc.createAnswer());
  if (pub.pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      const check = () => pub.pc.iceGatheringState === 'complete' && resolve();
      pub.pc.addEventListener('icegatheringstatechange', check);
      setTimeout(resolve, 5000);
    });
  }
  return pub.pc.localDescription.sdp;
}
"""


async def eventually(
    check: Callable[[], bool],
    what: str,
    timeout: float = 3 * LIVENESS,
    state: Callable[[], object] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {state()}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def blank_page() -> AsyncIterator[str]:
    """An http://127.0.0.1 origin (a secure context, for getUserMedia)."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>pub</title>", content_type="text/html"
        )

    app = web.Application()
    app.add_routes([web.get("/", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def relay_offers(
    client: MemoryClient, answer: Callable[[str], Awaitable[str]]
) -> None:
    """Answer every offer the server sends the Chromium publisher."""
    while True:
        message = await client.inbox.get()
        if isinstance(message, Offer):
            await client.send(Answer(sdp=await answer(message.sdp)))


class ForcedRemb:
    """A viewer that reports ``bitrate`` (REMB) for the stream it receives,
    four times a second, over whatever its own estimator says."""

    def __init__(self, peer: Peer, media_ssrc: int, bitrate: int) -> None:
        self.peer = peer
        self.media_ssrc = media_ssrc
        self.bitrate = bitrate
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        receiver = next(
            t.receiver
            for t in self.peer.pc.getTransceivers()
            if t.kind == "video" and t.receiver.track is not None
        )
        while True:
            packet = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=1234,
                media_ssrc=0,
                fci=pack_remb_fci(self.bitrate, [self.media_ssrc]),
            )
            await receiver._send_rtcp(packet)  # as test_media.py sends PLIs
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        self._task.cancel()


def no_remb(offer: str) -> str:
    """The offer without abs-send-time (and REMB feedback): aiortc's receiver
    estimates only from abs-send-time, so the viewer then sends no REMB of
    its own and the test's (ForcedRemb) is the only one."""
    return "".join(
        line
        for line in offer.splitlines(keepends=True)
        if "goog-remb" not in line and "abs-send-time" not in line
    )


class CapOnly:
    """Tells the publisher the cap: its link is loopback. pysfu's own uplink
    estimate takes arrival times in Python and, on a busy test machine, reads
    event-loop jitter as congestion (issue 14's third mechanism), which would
    keep Chromium from sending its top layer at all."""

    def combine(
        self, own_estimate: int | None, cap: int | None, subscribers: Sequence[int]
    ) -> int | None:
        return cap


async def test_viewers_get_the_layer_their_estimate_carries() -> None:
    sfu = SFU(
        SFUConfig(
            ice=IceConfig(host_addresses=("127.0.0.1",)),
            forwarding=ForwardingConfig(
                simulcast=True,
                remb_policy=CapOnly(),
                max_video_bitrate=3_000_000,
                # the pause below is checked here, the probes that end a pause,
                # the climbs and the start-up grace in
                # tests/unit/test_simulcast.py: none may start mid-check
                simulcast_policy=SimulcastPolicy(
                    probe_after=3600.0, climb_after=3600.0, start_grace=0.0
                ),
            ),
        )
    )
    room = sfu.create_room("simulcast", max_participants=3)
    events: list[LayerChangedEvent] = []
    room.add_listener(
        lambda event: (
            events.append(event) if isinstance(event, LayerChangedEvent) else None
        )
    )
    # the viewers' REMBs are the test's (ForcedRemb): aiortc's own estimator
    # reads a busy machine's event-loop jitter as congestion
    fast, slow = (
        Peer(name, code, publish_video=False, publish_audio=False, offer_filter=no_remb)
        for name, code in (("fast", 1), ("slow", 2))
    )
    relay: asyncio.Task[None] | None = None
    forced: list[ForcedRemb] = []
    try:
        async with chromium() as browser, blank_page() as url:
            user = await browser.user("publisher")
            await user.page.goto(url)
            client = await MemorySignalling().join(room, "pub", "host")

            async def answer(offer: str) -> str:
                assert "a=simulcast:recv q;h;f" in offer
                return str(await user.page.evaluate(ANSWER_JS, offer))

            relay = asyncio.create_task(relay_offers(client, answer))
            await fast.join(room)
            await slow.join(room)

            publisher = client.participant
            await eventually(
                lambda: "pub/video" in publisher.publications, "publishing"
            )
            forwarder = publisher.publications["pub/video"]
            assert await user.page.evaluate("window.pub.rids") == ["q", "h", "f"]
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
                    forwarder.header_extensions,
                    forwarder.layers,
                    [layer.packets_received for layer in forwarder.layers.values()],
                    forwarder.stats,
                ),
            )
            assert forwarder.stats.unknown_ssrc == 0

            fast_video = await fast.wait_track("pub", "video", LIVENESS)
            slow_video = await slow.wait_track("pub", "video", LIVENESS)
            slow_audio = await slow.wait_track("pub", "audio", LIVENESS)

            def size(track: ReceivedTrack) -> int:
                return track.size[0] if track.size else 0

            # both start on the top layer Chromium sends
            await eventually(
                lambda: size(fast_video) >= 640 and size(slow_video) >= 640,
                "both viewers decoding a large picture",
                state=lambda: (
                    fast_video.size,
                    slow_video.size,
                    fast_video.frames,
                    slow_video.frames,
                    forwarder.layer_bitrates(int(time.monotonic() * 1000)),
                    [str(e) for e in events][-6:],
                    [
                        m.subscriptions["pub/video"].downtrack.stats
                        for m in room.members.values()
                        if "pub/video" in m.subscriptions
                    ],
                ),
            )

            downtrack = room.members["slow"].subscriptions["pub/video"].downtrack
            fast_downtrack = room.members["fast"].subscriptions["pub/video"].downtrack
            forced = [
                ForcedRemb(fast, fast_downtrack.ssrc, 20_000_000),
                ForcedRemb(slow, downtrack.ssrc, 20_000_000),
            ]
            slow_remb = forced[1]
            slow_remb.bitrate = 300_000  # q (~150k) fits, h (~400k) does not

            def layer(which: DownTrack) -> int:
                rid = which.stats.layer
                return -1 if rid is None else "qhf".index(rid)

            await eventually(
                lambda: (
                    downtrack.stats.layer == "q"
                    and layer(fast_downtrack) > 0
                    and 0 < size(slow_video) < size(fast_video)
                ),
                "the slow viewer on the smallest layer, the other on a larger one",
                state=lambda: (
                    downtrack.stats,
                    fast_downtrack.stats.layer,
                    fast_downtrack.layers.target,
                    fast_downtrack.layers.current,
                    fast_downtrack.estimate,
                    fast_downtrack in forwarder.downtracks,
                    fast_downtrack.stats.packets_sent,
                    fast_downtrack.layers.__dict__,
                    time.monotonic(),
                    [
                        (e.layer, e.previous)
                        for e in events
                        if e.subscriber_id == "fast"
                    ],
                    slow_video.size,
                    fast_video.size,
                    forwarder.layer_bitrates(int(time.monotonic() * 1000)),
                ),
            )
            fast_frames = fast_video.frames
            await eventually(
                lambda: fast_video.frames > fast_frames + 15, "the fast viewer decoding"
            )
            switched = [e.layer for e in events if e.subscriber_id == "slow"]
            assert "q" in switched

            # its estimate rises: up again (after it has held), to what the
            # other viewer gets (Chromium drops its top layer now and then
            # when the machine is busy)
            slow_remb.bitrate = 20_000_000
            await eventually(
                lambda: (
                    layer(downtrack) > 0
                    and layer(downtrack) == layer(fast_downtrack)
                    and size(slow_video) == size(fast_video)
                ),
                "the slow viewer back on the top layer",
                state=lambda: (
                    downtrack.stats.layer,
                    fast_downtrack.stats.layer,
                    slow_video.size,
                    fast_video.size,
                ),
            )

            # below the lowest layer: video stops, audio goes on
            slow_remb.bitrate = 30_000
            await eventually(lambda: downtrack.stats.layer is None, "video paused")
            # counted where it is decided: the viewer's own decoder may still
            # be working through frames it received before (23 of them, once,
            # on a loaded machine), so its count is no measure of the pause
            video_sent, audio_frames = downtrack.stats.packets_sent, slow_audio.frames
            await eventually(
                lambda: slow_audio.frames > audio_frames + 100, "audio going on"
            )
            assert downtrack.stats.packets_sent == video_sent  # no video forwarded
            assert fast_video.frames > 0

            # room again, but the viewer asks for a small tile: q at most
            slow_remb.bitrate = 20_000_000
            await slow.client.send(VideoQuality(track_id="pub/video", max_layer="q"))
            await eventually(
                lambda: (
                    downtrack.stats.layer == "q" and size(slow_video) < size(fast_video)
                ),
                "the viewer on the layer it asked for",
            )
            await slow.client.send(VideoQuality(track_id="nope", max_layer="q"))
            await eventually(
                lambda: any(e.code == "unknown_track" for e in slow.errors),
                "an error for a track it does not receive",
            )
    finally:
        for each in forced:
            each.stop()
        if relay is not None:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        await fast.close()
        await slow.close()
        await sfu.close()
