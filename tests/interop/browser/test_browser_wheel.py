"""The package as a user gets it, in Chromium: the wheel in a fresh venv
outside the repository, one command (``pysfu serve``), and two browsers
meeting in a room through the links the app gives them.

As a user would, the server runs with no host key of its own: it generates
one and prints the link that creates a room; the host opens that link and
shares the participant link the page shows.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

from ...example_server import stop_process
from ...wheel_venv import fresh_venv
from .harness import LIVENESS, Browser, Server, User, free_port, log_tail, wait_for
from .test_browser_room import open_as_participant

#: What ``user``'s page shows of participant ``id``: the remote tile's video
#: size, playback position and a 16x12 grey thumbnail of its current frame.
REMOTE_VIDEO = """(id) => {
  const video = document.querySelector(`.tile.remote[data-participant="${id}"] video`);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = 16;
  canvas.height = 12;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0, 16, 12);
  const data = context.getImageData(0, 0, 16, 12).data;
  const thumbnail = [];
  for (let i = 0; i < data.length; i += 4) {
    thumbnail.push(Math.round((data[i] + data[i + 1] + data[i + 2]) / 3));
  }
  return { width: video.videoWidth, time: video.currentTime, thumbnail };
}"""


async def assert_sees_moving_video(viewer: User, sender: User) -> None:
    """``viewer``'s page plays ``sender``'s video: its playback advances, its
    picture changes and is not flat (Chromium's fake camera is a moving
    pattern on a coloured background)."""
    sender_id = await sender.participant_id()
    seen: list[dict[str, Any]] = []

    async def moving() -> bool:
        frame = await viewer.page.evaluate(REMOTE_VIDEO, sender_id)
        if frame is None:
            return False
        seen.append(frame)
        first = seen[0]
        return bool(
            frame["time"] > first["time"]
            and frame["thumbnail"] != first["thumbnail"]
            and max(frame["thumbnail"]) - min(frame["thumbnail"]) > 32
        )

    await wait_for(
        moving,
        f"{viewer.name} to see {sender.name}'s video move",
        details=lambda: f"last seen: {seen[-1:]}",
    )


async def test_the_wheel_in_a_fresh_venv_serves_two_browsers(
    wheel: Path, tmp_path: Path, browser: Browser
) -> None:
    venv = fresh_venv(wheel, tmp_path)
    port = free_port()
    log = tmp_path / "pysfu-serve.log"
    # the one command; --port for a free one, --ice-address since the test's
    # browsers are on loopback (the app's own fallback in a loopback-only
    # namespace, said explicitly so the test also runs outside one)
    command = [
        str(venv / "bin" / "pysfu"),
        "serve",
        f"--port={port}",
        "--ice-address=127.0.0.1",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        await asyncio.to_thread(server.wait_until_serving)

        async def printed_link() -> str | None:
            found = re.search(
                r"open this link to create a room: (\S+)", log.read_text()
            )
            return found.group(1) if found else None

        link = await wait_for(printed_link, "pysfu serve to print the host link")
        assert link.startswith(f"{server.base_url}/new#key=")

        host = await browser.user("Alice")
        await host.open(link)
        await host.page.wait_for_url("**/r/**", timeout=LIVENESS * 1000)
        await host.wait_status("waiting for the participant")
        guest = await open_as_participant(browser, host, "Bob")
        await guest.wait_status("connected")
        await host.wait_status("connected")

        await assert_sees_moving_video(guest, host)
        await assert_sees_moving_video(host, guest)
    finally:
        stop_process(process)
        print(f"--- {log.name}\n{log_tail(log)}")
    assert process.returncode == 0, log_tail(log)
