"""GStreamer WHIP/WHEP clients (tests/gst/) as test subprocesses.

The clients run with Debian's ``/usr/bin/python3`` (PyGObject and the
GStreamer typelibs, which the project's virtualenv does not have) and report
on stdout, one JSON object a line; :class:`GstClient` collects those lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .example_server import HOST_KEY, ROOT, stop_process
from .helpers import eventually

SYSTEM_PYTHON = "/usr/bin/python3"
GST = ROOT / "tests" / "gst"
#: The publisher's colour and tone, and what a decoder may make of them.
COLOR = (0x20, 0x60, 0xC0)
TONE = 440.0
COLOR_TOLERANCE = 12

#: Generous bound for anything a user waits for (CPU is shared with others).
LIVENESS = float(os.environ.get("GST_LIVENESS", "60"))


class GstClient:
    """A GStreamer client process; ``events`` fills with its status lines."""

    def __init__(self, script: str, *args: str, log: Path) -> None:
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._stderr = log.open("wb")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(GST / script), *args],
            stdin=subprocess.PIPE,
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

    def send(self, message: dict[str, Any]) -> None:
        """One JSON line to the client's stdin (room_member.py reads offers)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

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
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()

    def kill(self) -> None:
        """SIGKILL: the client vanishes without a DELETE."""
        self.process.kill()
        self.process.wait(timeout=10)

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-2000:]
        events = [e for e in self.events if e["event"] not in ("stats", "offer")]
        shown = [{k: str(v)[:1500] for k, v in e.items()} for e in events[-12:]]
        return f"events: {shown}\nlast stats: {self.last('stats')}\nstderr: {tail}"


GstStarter = Callable[..., GstClient]


@contextmanager
def gst_clients(log_dir: Path) -> Iterator[GstStarter]:
    """Start GStreamer clients (``start(script, *args)``); all stopped at exit."""
    started: list[GstClient] = []

    def start(script: str, *args: str) -> GstClient:
        log = log_dir / f"{script}-{len(started)}.log"
        started.append(GstClient(script, *args, log=log))
        return started[-1]

    try:
        yield start
    finally:
        for client in started:
            client.stop()


def publish(
    gst: GstStarter,
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


#: What whip_publish.py sends with ``--pattern=smpte``: colour bars scrolling
#: sideways, 1280x720 at 2 Mbit/s, so that most packets are as long as the
#: payloader makes them (its default MTU: 1400 bytes).
DETAILED = ("--pattern=smpte", "--size=1280x720", "--bitrate=2000000")


def smpte_bars(row: Any) -> set[tuple[int, ...]]:
    """The SMPTE bar colours (white, yellow, cyan, green, magenta, red, blue)
    clearly seen among a row's sampled (R, G, B) points."""
    bars = set()
    for point in row:
        if all(c < 64 or c > 191 for c in point):
            bar = tuple(int(c > 191) for c in point)
            if any(bar):
                bars.add(bar)
    return bars


def shows_smpte(row: Any) -> bool:
    """Whether a row shows (nearly) all seven bars: the picture arrived whole."""
    return len(smpte_bars(row)) >= 6


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
