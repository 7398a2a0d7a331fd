"""A GStreamer member of a WebSocket room that answers the server's offers.

    /usr/bin/python3 tests/gst/room_member.py [--duration SECONDS]
        [--publish --color RRGGBB --tone HZ]

In the WebSocket room the server offers and the client answers, again on
every change. This client has no WebSocket of its own: the test holds the
socket and relays. Each line on stdin is ``{"type": "offer", "sdp": ...}``;
each answer comes out as ``{"event": "answer", "sdp": ...}`` (once ICE
gathering is complete, so the first answer has its candidates). It decodes
what it receives, with whep_play.py's per-second stats. With ``--publish``
it also sends whip_publish.py's colour and tone, linked to webrtcbin before
the first offer arrives, as natural webrtcbin code does: webrtcbin then
sends on the first section of each kind the offer lists.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gstclient import GLib, Gst, GstWebRTC, Session, emit, main
from whep_play import Player
from whip_publish import PIPELINE


class RoomMember(Session):
    """Answers offers read from stdin; prints the answers."""

    def __init__(self, pipeline: Gst.Pipeline, **options: Any) -> None:
        super().__init__(pipeline, **options)
        self._complete = False
        self._answer_waiting = False
        GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, self._read)

    def _read(self, fd: int, condition: int) -> bool:
        line = sys.stdin.readline()
        if not line:
            self.loop.quit()  # the test closed our stdin: leave
            return False
        message = json.loads(line)
        if message.get("type") == "offer":
            self._on_offer(message["sdp"])
        return True

    def _on_offer(self, sdp: str) -> None:
        emit("offer", sdp=sdp)
        if self.set_remote(GstWebRTC.WebRTCSDPType.OFFER, sdp):
            promise = Gst.Promise.new_with_change_func(self._on_answer_created)
            self.webrtc.emit("create-answer", None, promise)

    def _on_answer_created(self, promise: Gst.Promise) -> None:
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            error = reply.get_value("error") if reply is not None else None
            GLib.idle_add(self.fail, f"create-answer failed: {error}")
            return
        done = Gst.Promise.new_with_change_func(self._on_local_set)
        self.webrtc.emit("set-local-description", answer, done)

    def _on_local_set(self, promise: Gst.Promise) -> None:
        GLib.idle_add(self._send_answer)

    def _send_answer(self) -> bool:
        if self._complete:
            emit("answer", sdp=self.local_sdp())
        else:
            self._answer_waiting = True  # sent by gathered()
        return False

    def gathered(self) -> None:
        self._complete = True
        if self._answer_waiting:
            self._answer_waiting = False
            emit("answer", sdp=self.local_sdp())


# --8<-- [start:payload-types]
def _with_offered_payload_types(pipeline: str) -> str:
    """whip_publish.py's pipeline with the payload types pysfu offers (aiortc's
    numbering: VP8 97, Opus 96). As an answerer, webrtcbin 1.22 binds a send
    pad to an offered section only if its caps' payload type is the offer's:
    with any other it answers the section inactive and sends nothing."""
    pipeline = pipeline.replace("pt=96", "pt=97").replace("payload=96", "payload=97")
    return pipeline.replace("pt=111", "pt=96").replace("payload=111", "payload=96")


# --8<-- [end:payload-types]


def build(argv: list[str]) -> Session:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float)
    parser.add_argument("--publish", action="store_true", help="send video and audio")
    parser.add_argument("--color", default="2060c0", help="RRGGBB")
    parser.add_argument("--tone", type=float, default=440.0)
    args = parser.parse_args(argv)
    if args.publish:
        pipeline = Gst.parse_launch(
            _with_offered_payload_types(PIPELINE).format(
                argb=0xFF000000 | int(args.color, 16),
                tone=args.tone,
                codec="vp8",
                CODEC="VP8",
                pattern="solid-color",
                speed=0,
                width=320,
                height=240,
                bitrate=300000,
            )
        )
    else:
        pipeline = Gst.Pipeline.new("member")
        webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        pipeline.add(webrtc)
    member = RoomMember(pipeline, duration=args.duration)
    Player(member, offer=False)
    return member


if __name__ == "__main__":
    main(build)
