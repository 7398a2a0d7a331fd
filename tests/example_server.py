"""Run examples/ws_sfu.py as a real subprocess on 127.0.0.1 for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST_KEY = "test-host-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def example_server(*extra: str) -> AsyncIterator[str]:
    """Start the example SFU; yield its base URL; always stop it."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "ws_sfu.py"),
            "--bind=127.0.0.1",
            f"--port={port}",
            f"--host-key={HOST_KEY}",
            "--ice-address=127.0.0.1",
            "--log-level=WARNING",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(f"example server exited with {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        else:
            raise RuntimeError("example server did not start")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
