"""What the browser tests drive: the example server, coturn and Chromium users.

The example server (``examples/ws_sfu.py``) and coturn run as subprocesses on
127.0.0.1; Debian's Chromium (``/usr/bin/chromium``, never downloaded) is
driven by Playwright. The fixtures in ``conftest.py`` start and stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ...helpers import LIVENESS

ROOT = Path(__file__).resolve().parents[3]
SERVER_SCRIPT = ROOT / "examples" / "ws_sfu.py"
CHROMIUM = "/usr/bin/chromium"
#: The bearer token of the servers' /metrics (it is not served to anyone).
METRICS_TOKEN = "test-metrics-token"
HOST_KEY = "test-host-key"
TURN_USER, TURN_PASSWORD = "test", "test"

# LIVENESS (from tests/helpers.py) bounds anything a user waits for: a page, a
# connection, media.

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a test pattern and a beep
    "--use-fake-ui-for-media-stream",  # grant camera and microphone
    "--allow-loopback-in-peer-connection",  # ICE candidates on 127.0.0.1
    "--autoplay-policy=no-user-gesture-required",  # play (and so decode) audio
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    what: str,
    timeout: float = LIVENESS,
    details: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    extra = f"\n{details()}" if details else ""
    pytest.fail(f"timed out waiting for {what}{extra}")


# -- the example server -----------------------------------------------------------


@dataclass
class HttpReply:
    status: int
    body: dict[str, Any]


def http_post(url: str, body: Any, headers: dict[str, str]) -> HttpReply:
    """POST JSON (no body if ``body`` is None) and decode the JSON reply."""
    data = b"" if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=LIVENESS) as response:
            return HttpReply(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, json.loads(error.read() or b"{}"))


@dataclass
class Server:
    """A running ``examples/ws_sfu.py``."""

    base_url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path = field(repr=False)

    async def post(
        self, path: str, body: Any = None, host_key: str | None = None
    ) -> HttpReply:
        headers = {"Authorization": f"Bearer {host_key}"} if host_key else {}
        return await asyncio.to_thread(http_post, self.base_url + path, body, headers)

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of the server's ``/metrics`` (``None``: not
        there); blocking, call it in a thread from a test."""
        request = urllib.request.Request(
            self.base_url + "/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=LIVENESS) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + LIVENESS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"examples/ws_sfu.py exited ({self.process.returncode}):\n"
                    + log_tail(self.log)
                )
            try:
                with urllib.request.urlopen(self.base_url + "/", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        tail = log_tail(self.log)
        pytest.fail(f"examples/ws_sfu.py did not serve / in time:\n{tail}")


# -- coturn -----------------------------------------------------------------------


@dataclass
class Turn:
    """A running coturn ``turnserver``."""

    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def turn_command(turnserver: str, port: int, workdir: Path) -> list[str]:
    """coturn on 127.0.0.1 only, relaying to loopback, one user, no TLS/CLI."""
    relay_low = 40000 + secrets.randbelow(20000)
    return [
        turnserver,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={relay_low}",
        f"--max-port={relay_low + 200}",
        f"--user={TURN_USER}:{TURN_PASSWORD}",
        "--realm=pysfu",
        "--lt-cred-mech",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--allow-loopback-peers",  # the SFU is on 127.0.0.1 too
        "--no-cli",
        "--no-rfc5780",
        f"--pidfile={workdir / 'turnserver.pid'}",
        "--log-file=stdout",
        "--simple-log",
    ]


def stun_binding_answered(port: int) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:port gets its response."""
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data = sock.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[8:20] == request[8:20]


# -- Chromium users ----------------------------------------------------------------


@dataclass
class User:
    """One person: an isolated browser context with one page of the client."""

    name: str
    page: Any = field(repr=False)  # playwright.async_api.Page
    console: list[str] = field(default_factory=list, repr=False)

    async def open(self, url: str) -> None:
        await self.page.goto(url)

    async def wait_status(self, text: str, timeout: float = LIVENESS) -> None:
        from playwright.async_api import expect

        await expect(self.page.locator("#status")).to_have_text(
            text, timeout=timeout * 1000
        )

    async def stats(self) -> dict[str, Any]:
        """``window.pysfu.stats()``: inbound/outbound RTP and the candidate pair."""
        result: dict[str, Any] = await self.page.evaluate("window.pysfu.stats()")
        return result

    async def join_response(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.pysfu.joinResponse")
        return result

    async def participant_id(self) -> str:
        return str((await self.join_response())["participant_id"])


@dataclass
class Browser:
    """A headless Chromium; :meth:`user` opens a new, isolated context."""

    browser: Any = field(repr=False)  # playwright.async_api.Browser
    users: list[User] = field(default_factory=list)

    async def user(self, name: str) -> User:
        context = await self.browser.new_context()
        context.set_default_timeout(LIVENESS * 1000)  # Playwright's own is 30 s
        page = await context.new_page()
        user = User(name, page)
        page.on("console", lambda m: user.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: user.console.append(f"pageerror: {e}"))
        self.users.append(user)
        return user


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Headless Debian Chromium with fake camera and microphone (and
    ``extra_args``); prints each user's console when it closes."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is missing (pip install playwright)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
        )
        wrapper = Browser(launched)
        try:
            yield wrapper
        finally:
            for user in wrapper.users:
                print(f"--- console of {user.name}")
                print("\n".join(user.console[-40:]))
            await launched.close()


def tone_wav(path: Path, seconds: float = 10.0, frequency: float = 440.0) -> Path:
    """A loud 16-bit mono tone, for ``--use-file-for-fake-audio-capture``
    (Chromium's own fake microphone beeps for 20 ms every 500 ms only)."""
    rate = 48000
    samples = (
        int(16000 * math.sin(2 * math.pi * frequency * i / rate))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(rate)
        output.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path
