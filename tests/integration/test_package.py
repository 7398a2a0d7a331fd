"""The app as a user gets it from the package: the wheel in a fresh venv
outside the repository, one command, two clients meeting in a room; and the
example's start-up telling where media goes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from pysfu._aiortc import default_host_addresses

from ..example_server import ROOT, free_port, stop_process
from ..peers import PeerFactory
from ..wheel_venv import fresh_venv
from ..ws_client import WsClient, create_room, join

HOST_KEY = "test-host-key"


async def started(process: subprocess.Popen[bytes], port: int) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError("the server did not start")


async def meet(http: aiohttp.ClientSession, base: str, peers: PeerFactory) -> list[str]:
    """Host and guest meet and decode each other's video; the offers' SDP."""
    _, room = await create_room(http, base)
    _, host_grant = await join(http, room["join_url"], role="host")
    _, guest_grant = await join(http, room["join_url"])
    host = peers(host_grant["participant_id"], 1)
    guest = peers(guest_grant["participant_id"], 2)
    clients = []
    for peer, grant in ((host, host_grant), (guest, guest_grant)):
        client = await WsClient.connect(http, grant)
        peer.attach(client)
        clients.append(client)
    assert (await guest.wait_video_from(host)).codes() == {1}
    assert (await host.wait_video_from(guest)).codes() == {2}
    return [m["sdp"] for c in clients for m in c.raw if m["type"] == "offer"]


def candidate_ports(offers: list[str]) -> set[int]:
    return {
        int(m.group(1))
        for sdp in offers
        for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp)
    }


def test_the_wheel_ships_the_app_its_client_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = archive.read(metadata).decode()
        entry_points = archive.read(metadata.replace("METADATA", "entry_points.txt"))
    for static in (
        "index.html",
        "app.js",
        "style.css",
        "pysfu-client.js",
        "pysfu-client.d.ts",
    ):
        assert f"pysfu/app/static/{static}" in names
    assert {"pysfu/app/server.py", "pysfu/__main__.py"} <= names
    assert b"pysfu = pysfu.__main__:main" in entry_points
    assert "Requires-Dist: aiohttp>=3.9; extra == 'server'" in requires
    assert "Requires-Dist: prometheus-client>=0.20; extra == 'server'" in requires


async def test_the_wheel_in_a_fresh_venv_serves_a_room(
    wheel: Path,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    peers: PeerFactory,
) -> None:
    """``pysfu serve`` from the wheel, installed outside the repository."""
    venv = fresh_venv(wheel, tmp_path)

    port, low = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(venv / "bin" / "pysfu"),
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--ice-address",
            "127.0.0.1",
            "--ice-ports",
            f"{low}-{low + 9}",
            "--host-key",
            HOST_KEY,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await started(process, port)
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/static/app.js") as response:
            assert response.status == 200
        async with http.get(f"{base}/r/some-room") as response:
            assert "<html" in (await response.text()).lower()
        ports = candidate_ports(await meet(http, base, peers))
        assert ports and all(low <= p <= low + 9 for p in ports), ports
    finally:
        stop_process(process)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    assert f"media (ICE, UDP) on 127.0.0.1, ports {low}-{low + 9}" in output


def test_python_dash_m_pysfu_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pysfu"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "pysfu serve" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pysfu", "serve", "--ice-ports", "9-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "need 1 <= LO <= HI" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pysfu", "serve", "--ice-address", "localhost"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "'localhost' is not an IP address" in done.stderr


@pytest.mark.skipif(
    bool(default_host_addresses()), reason="needs a loopback-only network namespace"
)
async def test_the_example_falls_back_to_loopback_and_says_so(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    """The README's command in a loopback-only namespace: no --ice-address,
    yet a room works, the start-up says where media goes, and aioice's
    per-check INFO lines stay out of the INFO log."""
    port = free_port()
    log = tmp_path / "log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples" / "ws_sfu.py"),
                "--port",
                str(port),
                "--host-key",
                HOST_KEY,
                "--log-level",
                "INFO",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            await started(process, port)
            await meet(http, f"http://127.0.0.1:{port}", peers)
        finally:
            stop_process(process)
    text = log.read_text()
    assert "media (ICE, UDP) on 127.0.0.1, any port" in text
    assert "WARNING pysfu.app: no network address but loopback" in text
    assert " aioice." not in text
