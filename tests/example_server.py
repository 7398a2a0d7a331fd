"""Run examples/ws_sfu.py as a real subprocess on 127.0.0.1 for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from .helpers import LIVENESS

ROOT = Path(__file__).resolve().parent.parent
HOST_KEY = "test-host-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process a test started: SIGTERM (a graceful shutdown), then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=LIVENESS)


class RunningExample(str):
    """The base URL of a running example; ``process`` is its Popen."""

    process: subprocess.Popen[bytes]


@contextlib.asynccontextmanager
async def run_example(
    script: Path, *options: str, log: Path | None = None, port: int | None = None
) -> AsyncIterator[RunningExample]:
    """Run an example server on 127.0.0.1 with ICE on loopback; yield its URL.

    ``port``: the one to listen on (known in advance, e.g. for --node-url);
    default a free one. The process is always stopped (:func:`stop_process`).
    """
    port = port or free_port()
    command = [sys.executable, str(script), f"--port={port}", "--ice-address=127.0.0.1"]
    log_file = open(log, "wb") if log is not None else None  # noqa: SIM115
    process = subprocess.Popen(
        [*command, *options],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # ready once the port accepts: aiohttp listens only after the app's
        # startup (worker processes included) finished. Starting Python, aiortc
        # and two workers takes seconds on a busy machine: wait for readiness
        # under the liveness bound, not for a fixed time.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIVENESS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{script.name} exited with {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if loop.time() > deadline:
                    raise RuntimeError(
                        f"{script.name} did not listen within {LIVENESS:.0f} s"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        running = RunningExample(f"http://127.0.0.1:{port}")
        running.process = process
        yield running
    finally:
        stop_process(process)
        if log_file is not None:
            log_file.close()


def example_server(
    *options: str, log: Path | None = None, port: int | None = None
) -> contextlib.AbstractAsyncContextManager[RunningExample]:
    """examples/ws_sfu.py with the test host key; logs to ``log`` if given."""
    return run_example(
        ROOT / "examples" / "ws_sfu.py",
        "--bind=127.0.0.1",
        f"--host-key={HOST_KEY}",
        "--log-level=WARNING",
        *options,
        log=log,
        port=port,
    )
