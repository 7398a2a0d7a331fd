"""Janus VideoRoom as a baseline: its process and a small HTTP API client.

:class:`JanusProcess` runs Debian's ``janus`` with a configuration folder
generated into a temporary directory: only the HTTP transport, bound to
127.0.0.1, and only the VideoRoom plugin are loaded (the plugin and transport
folders hold just those two libraries). Janus refuses loopback interfaces
when it gathers ICE candidates; inside the benchmark's loopback-only network
namespace ``run.py`` adds an ``ifb`` device carrying 127.0.0.1/32, and
``ice_enforce_list`` makes Janus gather on that address only.

:class:`JanusSession` speaks the Janus HTTP API: ``create`` a session,
``attach`` plugin handles, send plugin messages (with a JSEP offer or answer)
and receive asynchronous events with one long poll per session, which also
keeps the session alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

JANUS_BINARY = "janus"
LIB_DIR = Path("/usr/lib/x86_64-linux-gnu/janus")
PLUGIN = "janus.plugin.videoroom"
INSTALL_HINT = (
    "Janus is not installed: `apt-get install janus` (Debian/Ubuntu), "
    "or run without it: --modes pysfu,relay"
)


def janus_available() -> str | None:
    """Why Janus cannot run here, or ``None`` when it can."""
    if shutil.which(JANUS_BINARY) is None:
        return INSTALL_HINT
    for library in ("plugins/libjanus_videoroom.so", "transports/libjanus_http.so"):
        if not (LIB_DIR / library).exists():
            return f"{LIB_DIR / library} is missing ({INSTALL_HINT})"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(folder: Path, http_port: int, rtp_ports: tuple[int, int]) -> Path:
    """Janus configuration files in ``folder``; returns the configs folder."""
    configs, plugins, transports, empty = (
        folder / name for name in ("etc", "plugins", "transports", "empty")
    )
    for path in (configs, plugins, transports, empty):
        path.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(
        LIB_DIR / "plugins" / "libjanus_videoroom.so"
    )
    (transports / "libjanus_http.so").symlink_to(
        LIB_DIR / "transports" / "libjanus_http.so"
    )
    (configs / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{configs}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = 3
    session_timeout = 120
}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "127.0.0.1"
    ice_tcp = false
}}
"""
    )
    (configs / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    )
    (configs / "janus.plugin.videoroom.jcfg").write_text(
        "general: {\n    string_ids = false\n}\n"
    )
    return configs


class JanusProcess:
    """``janus`` in its own session with a generated configuration folder."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    async def start(self, timeout: float = 30.0) -> int:
        problem = janus_available()
        if problem:
            raise RuntimeError(problem)
        self._folder = tempfile.TemporaryDirectory(prefix="bench-janus-")
        folder = Path(self._folder.name)
        self.port = free_port()
        configs = write_config(folder, self.port, (40000, 60000))
        self.log_path = folder / "janus.log"
        log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            JANUS_BINARY,
            "--configs-folder",
            str(configs),
            "--disable-colors",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"janus exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    url = f"http://127.0.0.1:{self.port}/janus/info"
                    async with http.get(url) as response:
                        if response.status == 200:
                            return self.port
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"janus did not answer: {self.tail()}")
                await asyncio.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return " | ".join(text[-lines:])

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            for escalate in (proc.terminate, proc.kill):
                with contextlib.suppress(ProcessLookupError):
                    escalate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=5)
                    break
                except asyncio.TimeoutError:
                    continue
            await proc.wait()
        if self._folder is not None:
            if os.environ.get("PYSFU_BENCH_KEEP_JANUS_LOG"):
                print(self.tail(200), file=sys.stderr)
            self._folder.cleanup()
            self._folder = None


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus session: plugin handles, messages and the event long poll."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/janus"
        self.session_id = 0
        self._http: aiohttp.ClientSession | None = None
        self._poll: asyncio.Task[None] | None = None
        self._transactions = (f"t{n}" for n in itertools.count())
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: Events of each handle that no transaction waits for (webrtcup, media).
        self.events: dict[int, list[dict[str, Any]]] = {}
        self.closed = False

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90))
        reply = await self._post(self.base, {"janus": "create"})
        self.session_id = int(reply["data"]["id"])
        self._poll = asyncio.create_task(self._long_poll())

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        body = {
            **body,
            "transaction": body.get("transaction") or next(self._transactions),
        }
        async with self._http.post(url, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply.get('error')}")
        return reply

    async def attach(self) -> int:
        reply = await self._post(
            f"{self.base}/{self.session_id}", {"janus": "attach", "plugin": PLUGIN}
        )
        handle = int(reply["data"]["id"])
        self.events[handle] = []
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (create, list...): its plugin data."""
        reply = await self._post(
            f"{self.base}/{self.session_id}/{handle}",
            {"janus": "message", "body": body},
        )
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data

    async def message(
        self,
        handle: int,
        body: dict[str, Any],
        jsep: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """An asynchronous plugin request: the event that answers it."""
        transaction = next(self._transactions)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = waiter
        message: dict[str, Any] = {
            "janus": "message",
            "body": body,
            "transaction": transaction,
        }
        if jsep is not None:
            message["jsep"] = jsep
        try:
            await self._post(f"{self.base}/{self.session_id}/{handle}", message)
            event = await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiting.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return dict(event)

    async def trickle_completed(self, handle: int) -> None:
        """All our candidates were in the SDP: tell Janus there are no more."""
        await self._post(
            f"{self.base}/{self.session_id}/{handle}",
            {"janus": "trickle", "candidate": {"completed": True}},
        )

    async def detach(self, handle: int) -> None:
        with contextlib.suppress(JanusError, aiohttp.ClientError, OSError):
            await self._post(
                f"{self.base}/{self.session_id}/{handle}", {"janus": "detach"}
            )

    async def _long_poll(self) -> None:
        assert self._http is not None
        url = f"{self.base}/{self.session_id}?maxev=10"
        while not self.closed:
            try:
                async with self._http.get(url) as response:
                    reply = await response.json(content_type=None)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                if self.closed:
                    return
                await asyncio.sleep(0.5)
                continue
            for event in reply if isinstance(reply, list) else [reply]:
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        if event.get("janus") == "keepalive":
            return
        waiter = self._waiting.get(str(event.get("transaction")))
        if event.get("janus") == "event" and waiter is not None:
            if not waiter.done():
                waiter.set_result(event)
            return
        sender = event.get("sender")
        if isinstance(sender, int):
            self.events.setdefault(sender, []).append(event)

    async def close(self) -> None:
        self.closed = True
        if self._http is not None and self.session_id:
            with contextlib.suppress(Exception):
                await self._post(f"{self.base}/{self.session_id}", {"janus": "destroy"})
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        if self._http is not None:
            await self._http.close()
