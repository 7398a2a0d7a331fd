"""Play a WHEP stream with GStreamer and report what it decodes.

    /usr/bin/python3 tests/gst/whep_play.py URL TOKEN [--duration SECONDS]

webrtcbin offers recvonly VP8 (or VP9) video and Opus audio; what arrives is decoded
(decodebin) into RGB frames and mono 48 kHz samples. Once a second it prints
``{"event": "stats", "video": {...}, "audio": {...}}``: frames decoded, frame
size, the mean colour of the last frame and the colours of 16 points along
its row at a third of its height (``row``: bars of a test pattern); audio
buffers decoded, the peak level and the tone's frequency (from zero
crossings) over the last second.
"""

from __future__ import annotations

import argparse
import array
import itertools
from typing import Any

from gstclient import Gst, GstWebRTC, Session, WhipClient, emit, every_second, main

VIDEO_CAPS = (
    "application/x-rtp,media=video,encoding-name={codec},payload=96,clock-rate=90000"
)
AUDIO_CAPS = (
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,"
    "clock-rate=48000,encoding-params=(string)2"
)
VIDEO_OUT = (
    "videoconvert ! video/x-raw,format=RGB"
    " ! appsink name=sink emit-signals=true sync=false"
)
AUDIO_OUT = (
    "audioconvert ! audioresample ! audio/x-raw,format=S16LE,channels=1,rate=48000"
    " ! appsink name=sink emit-signals=true sync=false"
)


class Player:
    """Decodes what webrtcbin receives and keeps per-second numbers.

    ``offer``: add recvonly VP8 and Opus transceivers (a WHEP client offers
    them); otherwise decode whatever the server's offers bring.
    """

    def __init__(
        self,
        client: Session,
        *,
        offer: bool = True,
        nack: bool = False,
        codec: str = "VP8",
    ) -> None:
        self.client = client
        self.pipeline = client.pipeline
        self.video: dict[str, Any] = {"frames": 0}
        self.audio: dict[str, Any] = {"buffers": 0}
        self._last_frame: tuple[bytes, int, int] | None = None
        self._samples = array.array("h")
        webrtc = client.webrtc
        video_caps = VIDEO_CAPS.format(codec=codec.upper())
        for caps in (video_caps, AUDIO_CAPS) if offer else ():
            transceiver = webrtc.emit(
                "add-transceiver",
                GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                Gst.Caps.from_string(caps),
            )
            transceiver.set_property("do-nack", nack)
        webrtc.connect("pad-added", self._on_incoming)
        every_second(self._report)

    def _on_incoming(self, webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decodebin = Gst.ElementFactory.make("decodebin")
        decodebin.connect("pad-added", self._on_decoded)
        self.pipeline.add(decodebin)
        decodebin.sync_state_with_parent()
        pad.link(decodebin.get_static_pad("sink"))

    def _on_decoded(self, decodebin: Gst.Element, pad: Gst.Pad) -> None:
        kind = pad.get_current_caps().get_structure(0).get_name().split("/")[0]
        if kind not in ("video", "audio"):
            return
        sink_bin = Gst.parse_bin_from_description(
            VIDEO_OUT if kind == "video" else AUDIO_OUT, True
        )
        sink = sink_bin.get_by_name("sink")
        on_sample = self._on_video if kind == "video" else self._on_audio
        sink.connect("new-sample", on_sample)
        self.pipeline.add(sink_bin)
        sink_bin.sync_state_with_parent()
        pad.link(sink_bin.get_static_pad("sink"))
        emit("track", kind=kind)

    def _on_video(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        structure = sample.get_caps().get_structure(0)
        width = structure.get_value("width")
        height = structure.get_value("height")
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            self._last_frame = (bytes(info.data), width, height)
            buffer.unmap(info)
        self.video["frames"] += 1
        return Gst.FlowReturn.OK

    def _on_audio(self, sink: Gst.Element) -> Gst.FlowReturn:
        buffer = sink.emit("pull-sample").get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            self._samples.frombytes(bytes(info.data))
            del self._samples[:-48000]  # the last second
            buffer.unmap(info)
        self.audio["buffers"] += 1
        return Gst.FlowReturn.OK

    def _report(self) -> None:
        if self._last_frame is not None:
            data, width, height = self._last_frame
            stride = len(data) // height
            pixels = [  # every 4th pixel of every 4th row
                data[row * stride + col * 3 : row * stride + col * 3 + 3]
                for row in range(0, height, 4)
                for col in range(0, width, 4)
            ]
            n = len(pixels)
            top = (height // 3) * stride
            self.video.update(
                width=width,
                height=height,
                color=[round(sum(p[c] for p in pixels) / n) for c in range(3)],
                row=[
                    list(data[top + x * 3 : top + x * 3 + 3])
                    for x in (width * (2 * i + 1) // 32 for i in range(16))
                ],
            )
        samples = self._samples
        if samples:
            crossings = sum(
                1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0)
            )
            self.audio.update(
                peak=max(abs(min(samples)), abs(max(samples))),
                frequency=round(crossings / 2 / (len(samples) / 48000)),
            )
        emit("stats", video=self.video, audio=self.audio)


def build(argv: list[str]) -> WhipClient:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--codec", choices=("vp8", "vp9"), default="vp8")
    parser.add_argument("--duration", type=float)
    parser.add_argument(
        "--nack", action="store_true", help="offer NACK and RTX (retransmissions)"
    )
    args = parser.parse_args(argv)
    pipeline = Gst.Pipeline.new("player")
    webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
    webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipeline.add(webrtc)
    client = WhipClient(pipeline, args.url, args.token, duration=args.duration)
    Player(client, nack=args.nack, codec=args.codec)
    return client


if __name__ == "__main__":
    main(build)
