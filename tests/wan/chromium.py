"""Headless Chromium peers on the WAN bed, for ``benchmarks/wan_chromium.py``
and ``tests/wan/test_wan_chromium.py``.

Each peer is ``python -m tests.wan.chromium peer ...`` started inside a node's
namespace (:meth:`WanBed.spawn`), so its Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright, never downloaded) sends and
receives over that node's emulated link. It prints JSON lines: once
``{"join_url": ...}`` (a host of ``pysfu serve``'s page), then every second
``{"t": ..., "inbound": {...}, "outbound": [...]}`` from ``getStats()``.

Roles:

- ``host``: opens ``pysfu serve``'s ``/new#key=...`` (the app's own page and
  pysfu-client.js), which creates a room and joins it as its host, sending
  the camera (a 1280x720 y4m file, see :func:`camera_y4m`);
- ``guest``: opens a room's link on the same page, sending audio only;
- ``p2p-publisher``/``p2p-viewer``: the page of :func:`signalling_app` (run
  with ``python -m tests.wan.chromium signal``), a direct call.

SIGTERM closes Chromium before the peer exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .bed import Port, WanBed
from .call import CallFailed, Lines, follow, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/interop/browser/harness.py
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # host candidates as addresses, not mDNS names: nothing resolves those here
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def camera_y4m(
    path: Path, width: int = 1280, height: int = 720, frames: int = 90
) -> Path:
    """A detailed, moving 30 fps picture for ``--use-file-for-fake-video-
    capture`` (Chromium loops it): a fine texture panning across, a grid of
    moving bars and a block of fresh noise every frame, so the encoder has
    real work at every bitrate (a flat test pattern costs almost nothing)."""
    import numpy as np

    if path.exists():
        return path
    rng = np.random.default_rng(7)
    # a periodic texture: smoothed noise, tiled twice horizontally for the pan
    base = rng.integers(0, 256, (height, width), dtype=np.uint8).astype(np.float32)
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 2, 1)) / 4
    yy, xx = np.mgrid[0:height, 0:width]
    chroma_u = (128 + 60 * np.sin(xx[::2, ::2] / 40.0)).astype(np.uint8)
    chroma_v = (128 + 60 * np.cos(yy[::2, ::2] / 30.0)).astype(np.uint8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = i * width // frames
            luma = np.roll(base, shift, axis=1)
            bars = 60 * np.sin((xx + 6 * i) / 25.0) * np.sin((yy - 4 * i) / 35.0)
            picture = np.clip(luma * 0.7 + bars + 30, 0, 255).astype(np.uint8)
            noise = rng.integers(0, 256, (height // 4, width // 4), dtype=np.uint8)
            top, left = (i * 5) % (height - height // 4), (i * 11) % (width // 2)
            picture[top : top + height // 4, left : left + width // 4] = noise
            out.write(b"FRAME\n")
            out.write(picture.tobytes())
            out.write(np.roll(chroma_u, i * 2, axis=1).tobytes())
            out.write(np.roll(chroma_v, i, axis=0).tobytes())
    tmp.rename(path)
    return path


# -- the direct call's page and signalling ----------------------------------------

P2P_PAGE = """<!doctype html><title>p2p</title><script>
const role = new URLSearchParams(location.search).get('role');
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise((resolve) => pc.addEventListener('icegatheringstatechange',
    () => pc.iceGatheringState === 'complete' && resolve()));
}
async function poll(path) {
  for (;;) {
    const reply = await fetch(path);
    if (reply.status === 200) return await reply.text();
    await new Promise((r) => setTimeout(r, 250));
  }
}
async function start() {
  const pc = window.pc = new RTCPeerConnection();
  if (role === 'publisher') {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true,
      video: {width: 1280, height: 720, frameRate: 30}});
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    await fetch('/offer', {method: 'POST', body: pc.localDescription.sdp});
    await pc.setRemoteDescription({type: 'answer', sdp: await poll('/answer')});
  } else {
    await pc.setRemoteDescription({type: 'offer', sdp: await poll('/offer')});
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await fetch('/answer', {method: 'POST', body: pc.localDescription.sdp});
  }
}
start();
</script>"""


def signalling_app() -> Any:
    """An aiohttp app: ``/p2p?role=...`` and one offer/answer exchange."""
    from aiohttp import web

    slots: dict[str, str] = {}

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=P2P_PAGE, content_type="text/html")

    async def put(request: web.Request) -> web.Response:
        slots[request.path] = await request.text()
        return web.Response(text="ok")

    async def get(request: web.Request) -> web.Response:
        if request.path not in slots:
            return web.Response(status=404)
        return web.Response(text=slots[request.path])

    app = web.Application()
    app.add_routes(
        [web.get("/p2p", page)]
        + [web.post(p, put) for p in ("/offer", "/answer")]
        + [web.get(p, get) for p in ("/offer", "/answer")]
    )
    return app


# -- a peer --------------------------------------------------------------------------

#: what getUserMedia returns: the 1280x720 camera (sender) or audio only
CAMERA_JS = """
(audioOnly) => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => original(audioOnly
    ? {audio: true}
    : {audio: true, video: {width: 1280, height: 720, frameRate: 30}});
}
"""

STATS_JS = """
async () => {
  const pc = (window.pysfu && window.pysfu.pc) || window.pc;
  if (!pc) return null;
  const result = {inbound: null, outbound: [], connection: pc.connectionState,
    ice: pc.iceConnectionState,
    ice_restarts: (window.pysfu && window.pysfu.iceRestarts) || 0};
  for (const s of (await pc.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      result.ssrcs = (result.ssrcs || 0) + 1;
      // one per SSRC: the stream that has carried the most is the picture
      if (result.inbound && result.inbound.bytes > (s.bytesReceived || 0)) continue;
      result.inbound = {frames: s.framesDecoded || 0, width: s.frameWidth || 0,
        height: s.frameHeight || 0, bytes: s.bytesReceived || 0,
        freezes: s.freezeCount || 0, freeze_seconds: s.totalFreezesDuration || 0,
        nacks: s.nackCount || 0, plis: s.pliCount || 0,
        lost: s.packetsLost || 0};
    } else if (s.type === 'candidate-pair' && s.nominated
               && s.availableOutgoingBitrate !== undefined) {
      result.available = s.availableOutgoingBitrate;
      result.pair_rtt = s.currentRoundTripTime || null;
    } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
      result.outbound.push({rid: s.rid || null, bytes: s.bytesSent || 0,
        frames: s.framesEncoded || 0, height: s.frameHeight || 0,
        limited: s.qualityLimitationReason || null,
        limited_seconds: s.qualityLimitationDurations || null,
        fps: s.framesPerSecond || 0,
        encode_seconds: s.totalEncodeTime || 0, target: s.targetBitrate || 0});
    } else if (s.type === 'remote-inbound-rtp' && s.kind === 'video') {
      // what the far end's receiver reports say of this sender's stream
      result.remote = {fraction_lost: s.fractionLost || 0,
        lost: s.packetsLost || 0, rtt: s.roundTripTime || null};
    } else if (s.type === 'transport') {
      result.transport = {dtls: s.dtlsState || null,
        ufrag: s.iceLocalUsernameFragment || null,
        pair_changes: s.selectedCandidatePairChanges || 0};
    } else if (s.type === 'media-source' && s.kind === 'video') {
      result.source_frames = s.frames || 0;
    }
  }
  // the encodings the page asked for (rid -> maxBitrate, maxFramerate)
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== 'video') continue;
    result.encodings = (sender.getParameters().encodings || []).map((e) => ({
      rid: e.rid || null, max_bitrate: e.maxBitrate || null,
      max_framerate: e.maxFramerate || null}));
  }
  return result;
}
"""


async def run_peer(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    origin = args.url.split("/", 3)[:3]
    extra = [
        f"--unsafely-treat-insecure-origin-as-secure={'/'.join(origin)}",
    ]
    if args.y4m:
        extra.append(f"--use-file-for-fake-video-capture={args.y4m}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra]
        )
        try:
            page = await browser.new_page()
            page.on("console", lambda m: print(f"console: {m.text}", file=sys.stderr))
            page.on("pageerror", lambda e: print(f"pageerror: {e}", file=sys.stderr))
            audio_only = "true" if args.role in ("guest",) else "false"
            await page.add_init_script(f"({CAMERA_JS})({audio_only})")
            await page.goto(args.url)
            if args.role == "host":
                while not page.url.split("#")[0].split("?")[0].count("/r/"):
                    await asyncio.sleep(0.2)
                join_url = page.url.split("#")[0].split("?")[0]
                print(json.dumps({"join_url": join_url}), flush=True)
            while not stop.is_set():
                stats = await page.evaluate(STATS_JS)
                if stats is not None:
                    stats["t"] = time.monotonic()
                    print(json.dumps(stats), flush=True)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.interval)
        finally:
            await browser.close()


async def run_signalling(args: argparse.Namespace) -> None:
    from aiohttp import web

    runner = web.AppRunner(signalling_app())
    await runner.setup()
    await web.TCPSite(runner, args.bind, args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"ready": True}), flush=True)
    await stop.wait()
    await runner.cleanup()


CAMERA = Path("/tmp/pysfu-wan-camera-1280x720.y4m")
HOST_KEY = "test-host-key"
APP_PORT = 8080
SIGNAL_PORT = 8081


@contextmanager
def chromium_call(
    links: Mapping[str, Port],
    *,
    mode: str = "pysfu",
    simulcast: bool = False,
    server_args: Sequence[str] = (),
    seed: int = 1,
    interval: float = 1.0,
    server_trace: Lines | None = None,
) -> Iterator[tuple[WanBed, Lines, dict[str, Lines]]]:
    """A call of Chromiums on the bed: ``links`` has ``"publisher"`` and one
    or more viewers (any other names); a ``"server"`` node on a clean link is
    added. ``mode`` ``"pysfu"``: ``python -m pysfu serve`` there (with
    ``--simulcast`` if asked, and ``server_args``), the publisher hosts a
    room of the app's page and the viewers join it; ``"p2p"``: one viewer, a
    direct call signalled through the server node. ``interval``: seconds
    between the peers' stats lines. Yields the bed, the publisher's lines
    and the viewers' (by name), once every peer is started.
    ``server_trace`` (pysfu mode): the server runs
    :mod:`tests.wan.traced_serve` and its lines are collected there."""
    viewers = [name for name in links if name != "publisher"]
    camera = str(camera_y4m(CAMERA))
    peer = [
        sys.executable,
        "-m",
        "tests.wan.chromium",
        "peer",
        f"--interval={interval}",
    ]
    with WanBed({**links, "server": Port("")}, seed=seed) as bed:
        server = bed.address("server")
        if mode == "pysfu":
            base = f"http://{server}:{APP_PORT}"
            process = bed.spawn(
                "server",
                [
                    sys.executable,
                    "-m",
                    *(
                        ["pysfu", "serve"]
                        if server_trace is None
                        else ["tests.wan.traced_serve"]
                    ),
                    f"--bind={server}",
                    f"--port={APP_PORT}",
                    f"--ice-address={server}",
                    f"--host-key={HOST_KEY}",
                    f"--max-participants={len(viewers)}",
                    "--log-level=WARNING",
                    *(["--simulcast"] if simulcast else []),
                    *server_args,
                ],
                stdout=subprocess.DEVNULL if server_trace is None else subprocess.PIPE,
            )
            if server_trace is not None:
                assert process.stdout is not None
                threading.Thread(
                    target=server_trace.follow, args=(process.stdout,), daemon=True
                ).start()
            _wait_serving(bed, base + "/")
            published = follow(
                bed.spawn(
                    "publisher",
                    [
                        *peer,
                        f"--url={base}/new#key={HOST_KEY}",
                        "--role=host",
                        f"--y4m={camera}",
                    ],
                )
            )
            if not published.ready.wait(90):
                raise CallFailed("the host's page did not open a room")
            join_url = published.records[0]["join_url"]
            viewed = {
                name: follow(
                    bed.spawn(name, [*peer, f"--url={join_url}", "--role=guest"])
                )
                for name in viewers
            }
        elif mode == "p2p":
            (viewer,) = viewers
            base = f"http://{server}:{SIGNAL_PORT}"
            bed.spawn(
                "server",
                [
                    sys.executable,
                    "-m",
                    "tests.wan.chromium",
                    "signal",
                    f"--bind={server}",
                    f"--port={SIGNAL_PORT}",
                ],
                stdout=subprocess.DEVNULL,
            )
            _wait_serving(bed, base + "/p2p")
            viewed = {
                viewer: follow(
                    bed.spawn(
                        viewer, [*peer, f"--url={base}/p2p?role=v", "--role=p2p-viewer"]
                    )
                )
            }
            published = follow(
                bed.spawn(
                    "publisher",
                    [
                        *peer,
                        f"--url={base}/p2p?role=publisher",
                        "--role=p2p-publisher",
                        f"--y4m={camera}",
                    ],
                )
            )
        else:
            raise ValueError(f"unknown mode {mode!r}")
        yield bed, published, viewed


def _wait_serving(bed: WanBed, url: str) -> None:
    """Until ``url`` answers from inside the bed (the server node)."""
    probe = (
        "import sys, urllib.request\n"
        "try: urllib.request.urlopen(sys.argv[1], timeout=2)\n"
        "except Exception: sys.exit(1)"
    )
    wait_for(
        lambda: (
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    bed.namespaces["server"],
                    sys.executable,
                    "-c",
                    probe,
                    url,
                ],
                capture_output=True,
            ).returncode
            == 0
        ),
        60,
        f"{url} to answer",
    )


def frames(lines: Lines) -> int:
    """The frames the peer has decoded so far (0 before any)."""
    reports = [r for r in lines.reports() if r.get("inbound")]
    return int(reports[-1]["inbound"]["frames"]) if reports else 0


def height(lines: Lines) -> int:
    """The height of the picture the peer decodes now (0 before any)."""
    reports = [r for r in lines.reports() if r.get("inbound")]
    return int(reports[-1]["inbound"]["height"]) if reports else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    peer = commands.add_parser("peer")
    peer.add_argument("--url", required=True)
    peer.add_argument(
        "--role", choices=["host", "guest", "p2p-publisher", "p2p-viewer"]
    )
    peer.add_argument("--y4m")
    peer.add_argument(
        "--interval", type=float, default=1.0, help="seconds between stats lines"
    )
    signalling = commands.add_parser("signal")
    signalling.add_argument("--bind", required=True)
    signalling.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    asyncio.run(run_peer(args) if args.command == "peer" else run_signalling(args))


if __name__ == "__main__":
    main()
