"""Fixtures for the browser tests: the example server, coturn and Chromium.

Every process a fixture starts is stopped at teardown, pass or fail. Missing
programs make the tests fail, not skip (``scripts/test`` installs them):
Debian's ``chromium`` and ``coturn``, and the ``playwright`` wheel (whose
driver is all it needs: the browser is ``/usr/bin/chromium``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from ...example_server import stop_process
from .harness import (
    HOST_KEY,
    LIVENESS,
    METRICS_TOKEN,
    ROOT,
    SERVER_SCRIPT,
    Browser,
    Server,
    Turn,
    chromium,
    free_port,
    log_tail,
    stun_binding_answered,
    turn_command,
)


@pytest.fixture(autouse=True)
def patient_expect() -> None:
    """Playwright's ``expect()`` gives up after 5 s unless told otherwise: a
    busy machine gets the liveness bound instead."""
    try:
        from playwright.async_api import expect
    except ImportError:
        return  # the browser fixtures fail with the reason
    expect.set_options(timeout=LIVENESS * 1000)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``examples/ws_sfu.py`` (or ``script``) with extra options; ready
    once ``GET /`` answers."""
    servers: list[Server] = []

    def start(*options: str, script: Path = SERVER_SCRIPT) -> Server:
        port = free_port()
        log = tmp_path / f"{script.stem}-{port}.log"
        command = [
            sys.executable,
            str(script),
            "--bind=127.0.0.1",
            f"--port={port}",
            f"--host-key={HOST_KEY}",
            f"--metrics-token={METRICS_TOKEN}",
            "--ice-address=127.0.0.1",
            *options,
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
            )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        servers.append(server)
        server.wait_until_serving()
        return server

    yield start
    for server in servers:
        stop_process(server.process)
        print(f"--- {server.log.name}\n{log_tail(server.log)}")


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Turn]:
    """Debian's coturn on 127.0.0.1 with the user test:test."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.fail("coturn is not installed (apt-get install -y coturn)")
    port = free_port(socket.SOCK_DGRAM)
    log = tmp_path / "turnserver.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            turn_command(turnserver, port, tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + LIVENESS
        while not stun_binding_answered(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"turnserver did not start:\n{log_tail(log)}")
            time.sleep(0.1)
        yield Turn(port, process)
    finally:
        stop_process(process)
        print(f"--- turnserver\n{log_tail(log, 30)}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium with fake camera and microphone."""
    async with chromium() as launched:
        yield launched
