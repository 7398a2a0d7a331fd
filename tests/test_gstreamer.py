"""pysfu's media path with an independent WebRTC stack: GStreamer's webrtcbin.

``examples/whip_sfu.py`` runs as a real process; the GStreamer clients in
``tests/gst/`` run with Debian's ``/usr/bin/python3`` (PyGObject and the
GStreamer typelibs, which the project's virtualenv does not have) and report
what they decode as JSON lines. Missing packages make these tests fail, not
skip: ``scripts/test`` installs them (gstreamer1.0-plugins-{base,good,bad},
gstreamer1.0-nice, gstreamer1.0-tools, python3-gi, gir1.2-gst-plugins-bad-1.0).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .example_server import HOST_KEY, ROOT, RunningExample, run_example, stop_process
from .helpers import eventually
from .peers import Peer, PeerFactory
from .ws_client import WsClient, join

pytestmark = pytest.mark.gstreamer

SYSTEM_PYTHON = "/usr/bin/python3"
GST = ROOT / "tests" / "gst"
#: The publisher's colour and tone, and what a decoder may make of them.
COLOR = (0x20, 0x60, 0xC0)
TONE = 440.0
COLOR_TOLERANCE = 12

#: Generous bound for anything a user waits for (CPU is shared with others).
LIVENESS = 60.0


class GstClient:
    """A GStreamer client process; ``events`` fills with its status lines."""

    def __init__(self, script: str, *args: str, log: Path) -> None:
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._stderr = log.open("wb")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(GST / script), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "garbage", "line": line.decode()})

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == event]

    def last(self, event: str) -> dict[str, Any] | None:
        found = self.of(event)
        return found[-1] if found else None

    def has(self, event: str, **fields: Any) -> bool:
        return any(
            all(e.get(k) == v for k, v in fields.items()) for e in self.of(event)
        )

    def errors(self) -> list[str]:
        return [str(e.get("message")) for e in self.of("error")]

    def stop(self) -> None:
        """SIGTERM (the client leaves with DELETE), then SIGKILL; idempotent."""
        stop_process(self.process)
        self._reader.join(timeout=10)
        self._stderr.close()

    def kill(self) -> None:
        """SIGKILL: the client vanishes without a DELETE."""
        self.process.kill()
        self.process.wait(timeout=10)

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-2000:]
        return f"events: {self.events[-5:]}\nstderr: {tail}"


@pytest.fixture
def gst(tmp_path: Path) -> Iterator[Callable[..., GstClient]]:
    """Start GStreamer clients; every one is stopped when the test ends."""
    started: list[GstClient] = []

    def start(script: str, *args: str) -> GstClient:
        log = tmp_path / f"{script}-{len(started)}.log"
        started.append(GstClient(script, *args, log=log))
        return started[-1]

    yield start
    for client in started:
        client.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningExample]:
    """examples/whip_sfu.py on 127.0.0.1 (WHIP, WHEP and the WebSocket room)."""
    async with run_example(
        ROOT / "examples" / "whip_sfu.py",
        "--bind=127.0.0.1",
        f"--host-key={HOST_KEY}",
        "--slug=ascii",
        "--max-participants=2",
        "--log-level=INFO",
        log=tmp_path / "whip_sfu.log",
    ) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def publish(
    gst: Callable[..., GstClient],
    base: str,
    slug: str,
    *options: str,
    token: str = HOST_KEY,
) -> GstClient:
    color = "".join(f"{c:02x}" for c in COLOR)
    return gst(
        "whip_publish.py",
        f"{base}/whip/{slug}",
        token,
        f"--color={color}",
        f"--tone={TONE}",
        *options,
    )


async def credential(http: aiohttp.ClientSession, base: str, slug: str) -> Any:
    """A participant's join grant for the room ``slug``."""
    status, grant = await join(http, f"{base}/r/{slug}")
    assert status == 200, grant
    return grant


async def wait_for(
    client: GstClient, predicate: Callable[[], object], what: str
) -> None:
    def done() -> object:
        if client.errors() or client.process.poll() is not None:
            raise AssertionError(f"{what}: the client failed")
        return predicate()

    try:
        await eventually(done, LIVENESS, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{client.describe()}") from None


def close_to(color: Any, expected: tuple[int, ...]) -> bool:
    return color is not None and all(
        abs(a - b) <= COLOR_TOLERANCE for a, b in zip(color, expected, strict=True)
    )


def decoded(
    player: GstClient, color: tuple[int, int, int] | None, tone: float
) -> Callable[[], bool]:
    """Whether the player decodes frames (of ``color``) and the tone, a while."""

    def check() -> bool:
        stats = player.last("stats")
        if stats is None:
            return False
        video, audio = stats["video"], stats["audio"]
        return (
            video["frames"] >= 30
            and (color is None or close_to(video.get("color"), color))
            and audio["buffers"] >= 50
            and abs(audio.get("frequency", 0) - tone) <= tone * 0.05
        )

    return check


@pytest.mark.parametrize(
    "nack_fec", [False, True], ids=["plain", "with-rtx-red-ulpfec"]
)
async def test_gstreamer_publisher_to_gstreamer_player(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: Callable[..., GstClient],
    nack_fec: bool,
) -> None:
    """webrtcbin to webrtcbin through pysfu; optionally with the RTX, RED and
    ULPFEC sections webrtcbin offers when asked (pysfu forwards plain VP8)."""
    extra = ("--nack",) if nack_fec else ()
    publisher = publish(
        gst, server, "gst-room", *extra, *(("--fec",) if nack_fec else ())
    )
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    answer = publisher.last("answer")
    assert answer is not None and answer["status"] == 201
    assert "a=setup:passive" in answer["sdp"]  # pysfu is the DTLS server

    grant = await credential(http, server, "gst-room")
    player = gst(
        "whep_play.py", f"{server}/whep/gst-room", grant["ice"]["password"], *extra
    )
    await wait_for(player, decoded(player, COLOR, TONE), "the publisher's colour")

    # Each leaves with DELETE (on SIGTERM); the host's leaving closes the room.
    player.stop()
    assert player.has("deleted", status=200), player.describe()
    publisher.stop()
    assert publisher.has("deleted", status=200), publisher.describe()
    status, body = await join(http, f"{server}/r/gst-room")
    assert (status, body["error"]) == (404, "room_not_found")


async def test_a_vanished_gstreamer_publisher_is_dropped(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: Callable[..., GstClient],
) -> None:
    """libnice answers pysfu's ICE consent checks, so a session lives on; a
    publisher killed without a DELETE stops answering and is dropped."""
    publisher = publish(gst, server, "gst-gone")
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    grant = await credential(http, server, "gst-gone")
    player = gst("whep_play.py", f"{server}/whep/gst-gone", grant["ice"]["password"])
    await wait_for(player, decoded(player, COLOR, TONE), "the publisher's colour")

    def frames() -> int:
        stats = player.last("stats")
        return int(stats["video"]["frames"]) if stats else 0

    # 360 more frames: 12 s at 30 fps, longer than the consent window (10 s)
    start = frames()
    await wait_for(player, lambda: frames() >= start + 360, "a long session")

    publisher.kill()

    async def room_status() -> int:
        return (await join(http, f"{server}/r/gst-gone"))[0]

    for _ in range(int(LIVENESS)):
        if await room_status() == 404:
            break
        await asyncio.sleep(1)
    assert await room_status() == 404  # the host is gone, and with it the room


async def test_gstreamer_publisher_to_websocket_participant(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: Callable[..., GstClient],
    peers: PeerFactory,
) -> None:
    publisher = publish(gst, server, "gst-ws")
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    grant = await credential(http, server, "gst-ws")
    viewer = peers(grant["participant_id"], 2, publish_video=False, publish_audio=False)
    viewer.attach(
        WsClient(await http.ws_connect(grant["ws_url"]), grant["ice"]["password"])
    )

    def sees_publisher() -> bool:
        tracks = [t for t in viewer.received.values() if t.kind == "video"]
        return any(close_to(t.color, COLOR) and t.other_frames >= 30 for t in tracks)

    await wait_for(publisher, sees_publisher, "the WebSocket viewer sees the colour")
    audio = next(t for t in viewer.received.values() if t.kind == "audio")
    await eventually(lambda: audio.frames >= 50, LIVENESS, "audio frames")
    assert abs(audio.frequency() - TONE) <= TONE * 0.05


async def test_websocket_publisher_to_gstreamer_player(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: Callable[..., GstClient],
    peers: PeerFactory,
) -> None:
    async with http.post(
        f"{server}/api/rooms", headers={"Authorization": f"Bearer {HOST_KEY}"}
    ) as response:
        room = await response.json()
    slug = room["join_url"].rsplit("/", 1)[1]
    _, grant = await join(http, room["join_url"], role="host")
    host: Peer = peers(grant["participant_id"], 5, tone=880.0)
    host.attach(
        WsClient(await http.ws_connect(grant["ws_url"]), grant["ice"]["password"])
    )
    viewer_grant = await credential(http, server, slug)
    player = gst(
        "whep_play.py", f"{server}/whep/{slug}", viewer_grant["ice"]["password"]
    )
    await wait_for(player, decoded(player, None, 880.0), "the host's video and tone")
