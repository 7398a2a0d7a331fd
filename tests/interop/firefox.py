"""Firefox users for the interop tests: Debian's ``firefox-esr``, never a
downloaded browser, driven over WebDriver BiDi by ``firefox/driver.mjs``
(puppeteer-core from npm; ``scripts/test`` runs ``npm ci`` there).

A :class:`FirefoxUser` offers what the Chromium tests use of a
``harness.User`` (``open``, ``wait_status``, ``stats``, ``participant_id``)
plus ``evaluate``, so one check serves both browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .browser.harness import LIVENESS, wait_for

FIREFOX = "/usr/bin/firefox-esr"
DRIVER_DIR = Path(__file__).resolve().parent / "firefox"


@dataclass
class Firefox:
    """One headless Firefox; :meth:`user` opens a page in a new context."""

    process: asyncio.subprocess.Process = field(repr=False)
    users: list[FirefoxUser] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _replies: dict[int, asyncio.Future[Any]] = field(default_factory=dict, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def call(self, op: str, **arguments: Any) -> Any:
        """Run one driver command and return its value (fails the test on a
        driver error)."""
        assert self.process.stdin is not None
        command_id = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = reply
        line = json.dumps({"id": command_id, "op": op, **arguments}) + "\n"
        async with self._lock:
            self.process.stdin.write(line.encode())
            await self.process.stdin.drain()
        return await asyncio.wait_for(reply, LIVENESS)

    async def read_replies(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                print("firefox driver:", line.decode(errors="replace").rstrip())
                continue
            future = self._replies.pop(reply["id"], None)
            if future is None or future.done():
                continue
            if reply["ok"]:
                future.set_result(reply["value"])
            else:
                future.set_exception(RuntimeError(f"Firefox: {reply['error']}"))
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError("the Firefox driver exited"))

    async def version(self) -> str:
        return str(await self.call("version"))

    async def user(self, name: str) -> FirefoxUser:
        user = FirefoxUser(name, self, int(await self.call("page")))
        self.users.append(user)
        return user


@dataclass
class FirefoxUser:
    """One person in Firefox: a page in its own browser context."""

    name: str
    browser: Firefox = field(repr=False)
    page: int

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        return await self.browser.call("eval", page=self.page, expression=expression)

    async def open(self, url: str) -> None:
        await self.browser.call("goto", page=self.page, url=url)

    async def url(self) -> str:
        return str(await self.browser.call("url", page=self.page))

    async def screenshot(self, path: Path) -> None:
        """Save what the page shows as a PNG."""
        await self.browser.call("screenshot", page=self.page, path=str(path))

    async def console(self) -> list[str]:
        return list(await self.browser.call("console", page=self.page))

    async def status(self) -> str:
        return str(await self.evaluate("document.getElementById('status').textContent"))

    async def wait_status(self, text: str, timeout: float = LIVENESS) -> None:
        shown = [""]

        async def showing() -> bool:
            shown[0] = await self.status()
            return shown[0] == text

        await wait_for(
            showing,
            f"{self.name}'s page to show {text!r}",
            timeout,
            details=lambda: f"it shows {shown[0]!r}",
        )

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.evaluate("window.pysfu.stats()")
        return result

    async def join_response(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.evaluate("window.pysfu.joinResponse")
        return result

    async def participant_id(self) -> str:
        return str((await self.join_response())["participant_id"])


@contextlib.asynccontextmanager
async def firefox(init_script: Path | None = None) -> AsyncIterator[Firefox]:
    """Headless Debian Firefox with a fake camera and microphone; pages run
    ``init_script`` before their own scripts. Prints each page's console
    when it closes."""
    if not os.access(FIREFOX, os.X_OK):
        pytest.fail(f"{FIREFOX} is missing (apt-get install -y firefox-esr)")
    node = shutil.which("node")
    if node is None or not (DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(f"node or puppeteer-core is missing (npm ci in {DRIVER_DIR})")
    arguments = [str(DRIVER_DIR / "driver.mjs"), FIREFOX]
    if init_script is not None:
        arguments.append(str(init_script))
    process = await asyncio.create_subprocess_exec(
        node,
        *arguments,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=DRIVER_DIR,
        start_new_session=True,  # stopped with its Firefox processes
    )
    browser = Firefox(process)
    reader = asyncio.create_task(browser.read_replies())
    try:
        yield browser
    finally:
        for user in browser.users:
            with contextlib.suppress(Exception):
                print(f"--- console of {user.name} (Firefox)")
                print("\n".join((await user.console())[-40:]))
        assert process.stdin is not None
        process.stdin.close()  # the driver closes Firefox
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), LIVENESS)
        # whatever of Firefox is left in the driver's session goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
