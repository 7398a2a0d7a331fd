"""What the GStreamer test clients (WHIP publisher, WHEP player, room member) share.

These clients run with Debian's ``/usr/bin/python3`` (which has PyGObject and
the GStreamer typelibs; the project's virtualenv has neither), as subprocesses
of the tests. They report on stdout, one JSON object a line, e.g.
``{"event": "connection", "state": "connected"}``, so a test can follow them.

Rough edges of GStreamer 1.22's webrtcbin handled here, for any server:

- libnice never gathers loopback addresses on its own: a client on the same
  host as the server (or in a loopback-only network namespace) must add
  127.0.0.1 through the ICE agent's ``add-local-ip-address`` action signal.
- Reading webrtcbin's ``ice-agent`` property from Python hands PyGObject
  webrtcbin's only reference to the agent (1.22.0 never sinks the agent's
  floating reference), so the agent is freed with the Python wrapper and
  webrtcbin crashes: :func:`ice_agent` takes a reference of its own.
- The offer is sent once ICE gathering is complete, with its candidates in
  the SDP (no trickle ICE: WHIP's PATCH is optional for servers).
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)


_gobject = ctypes.CDLL("libgobject-2.0.so.0")
_gobject.g_object_ref.argtypes = [ctypes.c_void_p]
_gobject.g_object_ref.restype = ctypes.c_void_p


def ice_agent(webrtc: Gst.Element) -> Any:
    """webrtcbin's ICE agent (a GstWebRTCICE), safe to drop afterwards."""
    agent = webrtc.get_property("ice-agent")
    if agent.__grefcount__ == 1:  # the reference webrtcbin should have kept
        _gobject.g_object_ref(hash(agent))  # PyGObject hashes the C pointer
    return agent


def emit(event: str, **fields: Any) -> None:
    """Report one status line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def enum_name(value: Any) -> str:
    """A GLib enum value as its short nick, e.g. ``connected``."""
    return str(value.value_nick)


class Session:
    """One webrtcbin in a pipeline, run on a GLib main loop until told to stop.

    ``pipeline`` must hold a webrtcbin named ``webrtc`` with
    ``bundle-policy=max-bundle``. ``ice_addresses``: local addresses libnice
    offers as host candidates besides the ones it finds itself. Subclasses
    do the signalling: :meth:`gathered` runs once ICE gathering is complete.
    """

    def __init__(
        self,
        pipeline: Gst.Pipeline,
        *,
        ice_addresses: tuple[str, ...] = ("127.0.0.1",),
        duration: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.loop = GLib.MainLoop()
        self.exit_code = 0
        self.webrtc = pipeline.get_by_name("webrtc")
        agent = ice_agent(self.webrtc)
        for address in ice_addresses:
            agent.emit("add-local-ip-address", address)
        for name in ("ice-gathering-state", "ice-connection-state", "connection-state"):
            self.webrtc.connect(f"notify::{name}", self._on_state)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        for signum in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, self._on_signal)
        if duration is not None:
            GLib.timeout_add(int(duration * 1000), self._on_signal)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, the duration or a fatal error; leave."""
        self.pipeline.set_state(Gst.State.PLAYING)
        try:
            self.loop.run()
        finally:
            self.leave()
            self.pipeline.set_state(Gst.State.NULL)
            emit("stopped", code=self.exit_code)
        return self.exit_code

    def fail(self, message: str) -> None:
        emit("error", message=message)
        self.exit_code = 1
        self.loop.quit()

    def gathered(self) -> None:
        """ICE gathering is complete: the local description has candidates."""

    def leave(self) -> None:
        """Say goodbye to the server (on the way out)."""

    def local_sdp(self) -> str:
        return str(self.webrtc.get_property("local-description").sdp.as_text())

    def set_remote(self, kind: GstWebRTC.WebRTCSDPType, sdp: str) -> bool:
        ok, message = GstSdp.SDPMessage.new_from_text(sdp)
        if ok != GstSdp.SDPResult.OK:
            self.fail("unparsable SDP from the server")
            return False
        description = GstWebRTC.WebRTCSessionDescription.new(kind, message)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return True

    def _on_state(self, webrtc: Gst.Element, spec: Any) -> None:
        state = enum_name(webrtc.get_property(spec.name))
        emit(spec.name.replace("-state", ""), state=state)
        if spec.name == "ice-gathering-state" and state == "complete":
            GLib.idle_add(self._gathered)
        if spec.name == "connection-state" and state == "failed":
            GLib.idle_add(self.fail, "peer connection failed")

    def _gathered(self) -> bool:
        self.gathered()
        return False

    def _on_signal(self) -> bool:
        self.loop.quit()
        return False

    def _on_error(self, bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.fail(f"{message.src.get_name()}: {error.message} ({debug})")


class WhipClient(Session):
    """Offers to a WHIP/WHEP endpoint, applies the answer, DELETEs on exit."""

    def __init__(
        self, pipeline: Gst.Pipeline, url: str, token: str, **options: Any
    ) -> None:
        super().__init__(pipeline, **options)
        self.url = url
        self.token = token
        self.resource: str | None = None
        self._offered = False
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)

    # -- offer/answer ----------------------------------------------------

    def _on_negotiation_needed(self, webrtc: Gst.Element) -> None:
        if self._offered:
            return  # one offer per session: WHIP has no renegotiation
        self._offered = True
        promise = Gst.Promise.new_with_change_func(self._on_offer_created)
        webrtc.emit("create-offer", None, promise)

    def _on_offer_created(self, promise: Gst.Promise) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            error = reply.get_value("error") if reply is not None else None
            GLib.idle_add(self.fail, f"create-offer failed: {error}")
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def gathered(self) -> None:
        sdp = self.local_sdp()
        emit("offer", sdp=sdp)
        request = urllib.request.Request(
            self.url,
            data=sdp.encode(),
            method="POST",
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {self.token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = response.read().decode()
                location = response.headers.get("Location")
                status = response.status
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:500]
            self.fail(f"POST {self.url}: HTTP {exc.code}: {body}")
            return
        except OSError as exc:
            self.fail(f"POST {self.url}: {exc}")
            return
        if location:
            self.resource = urllib.parse.urljoin(self.url, location)
        emit("answer", status=status, location=self.resource, sdp=answer)
        self.set_remote(GstWebRTC.WebRTCSDPType.ANSWER, answer)

    def leave(self) -> None:
        if self.resource is None:
            return
        request = urllib.request.Request(
            self.resource,
            method="DELETE",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                emit("deleted", status=response.status)
        except urllib.error.HTTPError as exc:
            emit("deleted", status=exc.code)
        except OSError as exc:
            emit("error", message=f"DELETE {self.resource}: {exc}")
        self.resource = None


def every_second(callback: Callable[[], None]) -> None:
    """Call ``callback`` once a second on the main loop."""

    def tick() -> bool:
        callback()
        return True

    GLib.timeout_add_seconds(1, tick)


def main(build: Callable[[list[str]], Session]) -> None:
    """Build a client from the command line, run it, exit with its code."""
    sys.exit(build(sys.argv[1:]).run())
