"""Publish a solid colour and a sine tone to a WHIP endpoint with GStreamer.

    /usr/bin/python3 tests/gst/whip_publish.py URL TOKEN [--color RRGGBB]
        [--tone HZ] [--duration SECONDS] [--pattern smpte --size 1280x720]

Video: videotestsrc (one colour, or a detailed pattern scrolling sideways)
-> vp8enc -> rtpvp8pay (or VP9) at its default MTU (1400-byte packets once a
frame is larger than that: any detailed picture); audio: audiotestsrc
(sine) -> opusenc -> rtpopuspay; both into one webrtcbin (max-bundle), which
offers sendonly sections. The encoder makes a keyframe only every 100 s or
when asked (a PLI from the server): a viewer that sees video proves that
keyframe requests reach the publisher. Status lines: see gstclient.py.
SIGTERM leaves the session (HTTP DELETE) and exits.
"""

from __future__ import annotations

import argparse

from gstclient import Gst, GstWebRTC, WhipClient, main

# --8<-- [start:pipeline]
PIPELINE = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern={pattern} foreground-color={argb}
    horizontal-speed={speed}
  ! video/x-raw,width={width},height={height},framerate=30/1
  ! videoconvert ! queue
  ! {codec}enc deadline=1 cpu-used=8 keyframe-max-dist=3000 target-bitrate={bitrate}
  ! rtp{codec}pay pt=96 picture-id-mode=15-bit
  ! application/x-rtp,media=video,encoding-name={CODEC},payload=96,clock-rate=90000
  ! webrtc.
audiotestsrc is-live=true wave=sine freq={tone} volume=0.3
  ! audioconvert ! audioresample ! queue
  ! opusenc ! rtpopuspay pt=111
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000
  ! webrtc.
"""
# --8<-- [end:pipeline]


def build(argv: list[str]) -> WhipClient:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--color", default="2060c0", help="RRGGBB")
    parser.add_argument("--tone", type=float, default=440.0)
    parser.add_argument("--codec", choices=("vp8", "vp9"), default="vp8")
    parser.add_argument("--duration", type=float)
    parser.add_argument(
        "--pattern",
        default="solid-color",
        help="videotestsrc pattern; any but solid-color scrolls 4 pixels a frame",
    )
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--bitrate", type=int, default=300000, help="bits/s")
    parser.add_argument(
        "--nack", action="store_true", help="offer NACK and RTX (retransmissions)"
    )
    parser.add_argument("--fec", action="store_true", help="offer RED and ULPFEC")
    args = parser.parse_args(argv)
    argb = 0xFF000000 | int(args.color, 16)
    width, height = (int(n) for n in args.size.split("x"))
    pipeline = Gst.parse_launch(
        PIPELINE.format(
            argb=argb,
            tone=args.tone,
            codec=args.codec,
            CODEC=args.codec.upper(),
            pattern=args.pattern,
            speed=0 if args.pattern == "solid-color" else 4,
            width=width,
            height=height,
            bitrate=args.bitrate,
        )
    )
    webrtc = pipeline.get_by_name("webrtc")
    for index in (0, 1):
        transceiver = webrtc.emit("get-transceiver", index)
        transceiver.set_property("do-nack", args.nack)
        if args.fec:
            transceiver.set_property("fec-type", GstWebRTC.WebRTCFECType.ULP_RED)
    return WhipClient(pipeline, args.url, args.token, duration=args.duration)


if __name__ == "__main__":
    main(build)
