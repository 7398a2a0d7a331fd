"""The documentation: the code it shows runs, its includes resolve, it builds.

Every code block of docs/ is included (``--8<--``) from a file that a test
runs: the tutorial's room (examples/tutorial_room.*) here, with aiortc
clients and with Chromium; the HTTP long-polling adapter in
test_http_poll_example.py; the how-to code of docs/snippets/ here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import tomllib

from pysfu import (
    SFU,
    IceConfig,
    Role,
    TrackPublishedEvent,
    everyone_else,
    host_only,
)
from pysfu.errors import TooManyRooms, Unauthorized
from pysfu.signalling import MemorySignalling, Offer

from ..example_server import ROOT, free_port, run_example, stop_process
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory
from ..ws_client import WsClient

DOCS = ROOT / "docs"
TUTORIAL = ROOT / "examples" / "tutorial_room.py"
CHROMIUM = "/usr/bin/chromium"
LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))

#: The files docs/ may include code from, each run by a test.
TESTED_FILES = {
    "examples/tutorial_room.py": "test_tutorial_room_*",
    "examples/tutorial_room.html": "test_tutorial_room_in_chromium",
    "examples/tutorial_room.js": "test_tutorial_room_in_chromium",
    "examples/http_poll_sfu.py": "test_http_poll_example.py",
    "examples/whip_sfu.py": "test_whip.py",
    "src/pysfu/app/server.py": "test_ws_example.py",
    "tests/integration/test_http_poll_example.py": "test_http_poll_example.py",
    "docs/snippets/ice.py": "test_nat_* test_stun_* test_turn_*",
    "docs/snippets/turnserver.conf": "test_turn_credentials_work_with_coturn",
    "docs/snippets/policies.py": "test_stage test_breakout",
    "docs/snippets/rooms.py": "test_room_gate test_rooms_*",
    "docs/snippets/operate.py": "test_operate_*",
    "tests/gst/whip_publish.py": "test_gstreamer.py test_browser_gstreamer.py",
    "docs/snippets/workers.py": "test_workers.py::test_how_to_snippets",
    "tests/integration/test_natural_clients.py": "test_natural_clients.py",
    "tests/interop/browser/test_browser_whep.py": "test_browser_whep.py",
    "tests/gst/room_member.py": "test_gstreamer.py::test_a_late_joining_*",
    "docs/snippets/cluster.py": "test_cluster_join.py",
    "docs/snippets/udpmux.py": "test_udpmux.py::test_how_to_snippet",
    "docs/snippets/starlette_join.py": "test_starlette_join.py",
    "tests/interop/firefox/driver.mjs": "interop/test_firefox.py",
    "tests/interop/werift/client.mjs": "interop/test_werift.py",
    "tests/integration/test_recording.py": "test_recording.py",
    "tests/integration/test_recording_live.py": "test_recording_live.py",
}
MKDOCS_BUILD = [sys.executable, "-m", "mkdocs", "build", "--strict"]
#: Files included whole, as text (not code that runs).
TEXT_FILES = {"CHANGELOG.md", "CONTRIBUTING.md"}


def snippet(name: str) -> ModuleType:
    """Import docs/snippets/<name>.py."""
    path = DOCS / "snippets" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_snippets_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the tutorial -------------------------------------------------------------


async def test_tutorial_room_with_aiortc_clients(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with run_example(TUTORIAL) as base:
        clients = []
        for code in (1, 2):
            async with http.post(f"{base}/api/rooms/lobby/join") as response:
                assert response.status == 200
                grant = await response.json()
            assert grant["ws_url"].startswith("ws://127.0.0.1:")
            ws = await http.ws_connect(grant["ws_url"])
            client = WsClient(ws, grant["ice"]["password"])
            await client.hello(grant["signalling_token"])
            clients.append(peers(grant["participant_id"], code).attach(client))
        async with http.post(f"{base}/api/rooms/lobby/join") as response:
            assert response.status == 409
            assert (await response.json())["error"] == "room_full"
        first, second = clients
        assert (await second.wait_video_from(first)).codes() == {1}
        assert (await first.wait_video_from(second)).codes() == {2}
        await first.wait_audio_from(second)
        async with http.get(base) as page:
            assert '<video id="other"' in await page.text()
        async with http.get(f"{base}/room.js") as script:
            assert 'from "/pysfu-client.js"' in await script.text()
        async with http.get(f"{base}/pysfu-client.js") as client_module:
            assert "export async function join" in await client_module.text()


CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a test pattern and a beep
    "--use-fake-ui-for-media-stream",  # grant camera and microphone
    "--allow-loopback-in-peer-connection",  # ICE candidates on 127.0.0.1
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]

PLAYING = """() => {
  const video = document.getElementById("other");
  return video.videoWidth > 0 && video.currentTime > 1;
}"""


async def test_tutorial_room_in_chromium() -> None:
    """The tutorial's last step: two tabs of one browser see each other."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (scripts/test installs it)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with (
        run_example(TUTORIAL) as base,
        playwright_api.async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        errors: list[str] = []
        try:
            context = await browser.new_context()
            context.set_default_timeout(LIVENESS * 1000)  # Playwright's own is 30 s
            tabs = [await context.new_page() for _ in range(3)]
            for tab in tabs:
                tab.on("pageerror", lambda error: errors.append(str(error)))
            for tab in tabs[:2]:
                await tab.goto(base)
            for tab in tabs[:2]:
                await tab.wait_for_function(PLAYING, timeout=LIVENESS * 1000)
                status = tab.locator("#status")
                assert await status.text_content() == "connected"
            await tabs[2].goto(base)  # a third person
            await tabs[2].wait_for_function(
                "() => document.getElementById('status').textContent"
                " === 'the room is full'",
                timeout=LIVENESS * 1000,
            )
            await tabs[1].close()  # the second leaves: the first waits again
            await tabs[0].wait_for_function(
                "() => document.getElementById('status').textContent"
                " === 'waiting for someone'",
                timeout=LIVENESS * 1000,
            )
        finally:
            await browser.close()
        # the third tab's join() threw the server's refusal, uncaught
        assert len(errors) == 1 and "full" in errors[0], errors


# -- how-to: STUN, TURN and NAT ---------------------------------------------------


async def test_nat_announced_address_is_what_clients_see() -> None:
    ice = snippet("ice")
    sfu = ice.behind_nat("127.0.0.1", "203.0.113.7")
    try:
        room = sfu.create_room("r")
        client = await MemorySignalling().join(room, "alice", "host")
        offer = await client.receive_type(Offer, timeout=LIVENESS)
        candidates = [line for line in offer.sdp.splitlines() if "candidate:" in line]
        assert candidates and all(" 203.0.113.7 " in c for c in candidates)
        assert "127.0.0.1" not in offer.sdp
    finally:
        await sfu.close()


def test_stun_config() -> None:
    sfu = snippet("ice").with_stun("stun:stun.example.org:3478")
    assert [s.urls for s in sfu.config.ice.servers] == ["stun:stun.example.org:3478"]


@pytest.fixture
def coturn_with_docs_config(tmp_path: Path) -> Iterator[int]:
    """coturn with docs/snippets/turnserver.conf, moved to loopback for the test."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.skip("coturn is missing (scripts/test installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            turnserver,
            "-c",
            str(DOCS / "snippets" / "turnserver.conf"),
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--allow-loopback-peers",
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            "--log-file=stdout",
            "--no-tls",
            "--no-dtls",
        ],
        stdout=(tmp_path / "turnserver.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        stop_process(process)


async def test_turn_credentials_work_with_coturn(coturn_with_docs_config: int) -> None:
    from aioice.stun import TransactionFailed
    from aioice.turn import create_turn_endpoint

    ice = snippet("ice")
    conf = (DOCS / "snippets" / "turnserver.conf").read_text()
    secret = re.search(r"^static-auth-secret=(\S+)", conf, re.MULTILINE)
    assert secret is not None

    async def allocate(username: str, password: str) -> tuple[str, int]:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", coturn_with_docs_config),
            username=username,
            password=password,
        )
        try:
            relayed: tuple[str, int] = transport.get_extra_info("sockname")
            return relayed
        finally:
            transport.close()

    username, password = ice.turn_credentials(secret.group(1), "p-alice")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS
    while True:  # coturn takes a moment (seconds, on a busy machine) to listen
        try:
            relayed = await asyncio.wait_for(allocate(username, password), 5)
            break
        except (ConnectionError, OSError, asyncio.TimeoutError):
            if loop.time() > deadline:
                pytest.fail("coturn refused the credentials or did not answer")
            await asyncio.sleep(0.2)
    assert relayed[0] == "127.0.0.1"
    wrong = ice.turn_credentials("another-secret", "p-alice")
    with pytest.raises(TransactionFailed, match="401"):
        await asyncio.wait_for(allocate(*wrong), LIVENESS)
    expired = ice.turn_credentials(secret.group(1), "p-alice", ttl=-60)
    with pytest.raises(TransactionFailed, match="401"):
        await asyncio.wait_for(allocate(*expired), LIVENESS)
    servers = ice.client_ice_servers(secret.group(1), "p-bob")
    assert servers[1]["username"].endswith(":p-bob")


# -- how-to: eligibility ----------------------------------------------------------


def watch_publications(room: Any) -> list[TrackPublishedEvent]:
    published: list[TrackPublishedEvent] = []
    room.add_listener(
        lambda e: published.append(e) if isinstance(e, TrackPublishedEvent) else None
    )
    return published


async def test_stage(sfu: SFU, peers: PeerFactory) -> None:
    policies = snippet("policies")
    room = policies.stage(sfu, "stage", audience=2)
    published = watch_publications(room)
    host = await peers("host", 1).join(room, "host")
    alice = await peers("alice", 2).join(room)
    bob = await peers("bob", 3).join(room)
    await alice.wait_video_from(host)
    await bob.wait_video_from(host)
    await eventually(lambda: len(published) == 6, what="every track published")
    assert set(room.members["host"].subscriptions) == set()
    assert set(room.members["bob"].subscriptions) == {"host/audio", "host/video"}
    assert alice.track_from("bob", "video") is None
    # the show is over: everyone sees everyone
    room.eligibility = everyone_else
    policies.reapply(room)
    assert (await host.wait_video_from(alice)).codes() == {2}
    assert (await alice.wait_video_from(bob)).codes() == {3}
    room.eligibility = host_only  # and back: the host's tracks stay
    policies.reapply(room)
    assert set(room.members["alice"].subscriptions) == {"host/audio", "host/video"}
    await eventually(lambda: alice.received["bob/video"].ended.is_set(), what="end")


async def test_breakout(sfu: SFU) -> None:
    groups = {"a1": "a", "a2": "a", "b1": "b"}
    room = sfu.create_room(
        "breakout", max_participants=3, eligibility=snippet("policies").breakout(groups)
    )
    for name in ("host", "a1", "a2", "b1"):
        role = "host" if name == "host" else "participant"
        await MemorySignalling().join(room, name, role)
    members = room.members
    policy = room.eligibility
    assert policy(members["host"], members["b1"]) and policy(
        members["b1"], members["host"]
    )
    assert policy(members["a1"], members["a2"]) and not policy(
        members["a1"], members["b1"]
    )
    assert not policy(members["a1"], members["a1"])
    assert members["host"].role is Role.HOST


# -- how-to: rooms ------------------------------------------------------------------


async def test_room_gate(sfu: SFU) -> None:
    rooms = snippet("rooms")
    gate = rooms.RoomGate(sfu, ["key-1", "key-2"], max_rooms=2)
    with pytest.raises(Unauthorized):
        gate.create("wrong")
    with pytest.raises(Unauthorized):
        gate.create(None)
    first = gate.create("key-1", max_participants=4)
    assert first.max_participants == 4 and sfu.get_room(first.id) is first
    gate.create("key-2", room_id="named")
    with pytest.raises(TooManyRooms) as refused:  # pysfu's own, not a copy
        gate.create("key-1")
    assert refused.value.code == "too_many_rooms"


async def test_rooms_per_process(sfu: SFU, peers: PeerFactory) -> None:
    rooms = snippet("rooms")
    red, blue = rooms.room_for(sfu, "red"), rooms.room_for(sfu, "blue")
    assert rooms.room_for(sfu, "red") is red
    red_host = await peers("rh", 1).join(red, "host")
    red_guest = await peers("rg", 2).join(red)
    blue_host = await peers("bh", 3).join(blue, "host")
    blue_guest = await peers("bg", 4).join(blue)
    assert (await red_guest.wait_video_from(red_host)).codes() == {1}
    assert (await blue_guest.wait_video_from(blue_host)).codes() == {3}
    assert set(red_guest.received) == {"rh/audio", "rh/video"}  # nothing from blue
    assert rooms.occupancy(sfu) == {"red": 2, "blue": 2}
    # close_when_host_leaves=False: the room outlives its host, not its last member
    await red.members["rh"].leave()
    assert "red" in sfu.rooms
    await red.members["rg"].leave()
    await eventually(lambda: "red" not in sfu.rooms, what="the empty room closes")
    assert red.closed and not blue.closed


# -- every include resolves, and the site builds ------------------------------------

INCLUDE = re.compile(r'^\s*(?:-+8<-+)\s+"([^"]+)"\s*$')


def includes() -> list[tuple[Path, str, str | None]]:
    """(page, file, section) of every ``--8<-- "file:section"`` in docs/."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for line in page.read_text().splitlines():
            match = INCLUDE.match(line)
            if match:
                path, _, section = match.group(1).partition(":")
                found.append((page, path, section or None))
    return found


def test_every_include_resolves_to_a_tested_file() -> None:
    found = includes()
    assert len(found) > 20
    for page, path, section in found:
        where = f"{page.relative_to(ROOT)} includes {path}"
        assert path in TESTED_FILES or path in TEXT_FILES, (
            f"{where}: add a test that runs it, and list it in TESTED_FILES"
        )
        text = (ROOT / path).read_text()
        if section is not None:
            assert f"--8<-- [start:{section}]" in text, f"{where}: no section {section}"
            assert f"--8<-- [end:{section}]" in text, f"{where}: {section} never ends"
    copied = {path for path, _, _ in COPIED.findall((DOCS / "tutorial.md").read_text())}
    assert copied <= set(TESTED_FILES)
    shown = {path for _, path, _ in found} | copied
    assert set(TESTED_FILES) <= shown, "TESTED_FILES lists a file no page shows"


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: any warning (a broken link, a missing include,
    a docstring griffe cannot parse) fails. Skipped where the docs packages
    are not installed; ``scripts/docs`` installs them and builds."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    result = subprocess.run(
        [*MKDOCS_BUILD, "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").exists()
    # long signatures are broken over lines, one parameter each, not cut off
    rooms = (tmp_path / "site" / "reference" / "rooms" / "index.html").read_text()
    signatures = [
        re.sub(r"<[^>]+>", "", html)
        for html in re.findall(
            r'<div class="doc-signature[^"]*">(.*?)</div>', rooms, re.S
        )
    ]
    joins = [text for text in signatures if text.startswith("join(")]
    # (Room.join's among them; the short Rooms.join(request) fits one line)
    assert any("\n    participant_id: str,\n" in text for text in joins)
    long = [text for text in joins if len(" ".join(text.split())) > 88]
    assert long and all(text.count("\n    ") >= 3 for text in long)


COPIED = re.compile(
    r"<!-- copied from ([^\s:]+)(?::(\w+))? -->\n```\w*\n(.*?)```", re.S
)


def file_part(path: str, section: str | None) -> str:
    """A file's ``--8<--`` section, dedented, or the whole file without its
    section markers: what a page that copies it must show."""
    lines = (ROOT / path).read_text().splitlines()
    if section is None:
        return (
            "\n".join(line for line in lines if "--8<-- [" not in line).strip() + "\n"
        )
    start = next(
        i for i, line in enumerate(lines) if f"--8<-- [start:{section}]" in line
    )
    end = next(i for i, line in enumerate(lines) if f"--8<-- [end:{section}]" in line)
    return textwrap.dedent("\n".join(lines[start + 1 : end])).strip("\n") + "\n"


def test_tutorial_code_blocks_are_the_tested_files() -> None:
    """The tutorial shows its code inline (readable on GitHub, where
    ``--8<--`` includes are not expanded); each block is a copy of the part
    of the example file its comment names, which the tests above run."""
    page = (DOCS / "tutorial.md").read_text()
    copies = COPIED.findall(page)
    assert len(copies) == page.count("<!-- copied from ") >= 13
    assert not any(INCLUDE.match(line) for line in page.splitlines())
    for path, section, shown in copies:
        where = f"{path}:{section}" if section else path
        assert shown == file_part(path, section or None), (
            f"tutorial.md: {where} differs"
        )
    whole = {path for path, section, _ in copies if not section}
    assert whole == {f"examples/tutorial_room.{ext}" for ext in ("py", "html", "js")}


def test_the_docs_extra_formats_signatures() -> None:
    """mkdocstrings needs Ruff or Black to break long signatures over lines;
    ``scripts/docs`` installs only the docs extra, so it must bring one."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    docs_extra = pyproject["project"]["optional-dependencies"]["docs"]
    names = {re.split(r"[<>=\[ ]", requirement)[0] for requirement in docs_extra}
    assert names & {"ruff", "black"}


def test_readme_sample_is_the_tested_tutorial_code() -> None:
    """Every line of the README's Python sample stands in the tutorial room,
    which the tests above run: the sample cannot rot silently."""
    readme = (ROOT / "README.md").read_text()
    sample = readme.split("```python\n", 1)[1].split("```", 1)[0]
    source = {
        line.strip()
        for line in (ROOT / "examples/tutorial_room.py").read_text().splitlines()
    }
    missing = [
        line
        for line in sample.splitlines()
        if line.strip() and line.strip() not in source
    ]
    assert missing == []


def test_readme_sample_uses_no_undefined_name(tmp_path: Path) -> None:
    """Pasted as it is, the README's sample defines every name it uses."""
    readme = (ROOT / "README.md").read_text()
    sample = tmp_path / "sample.py"
    sample.write_text(readme.split("```python\n", 1)[1].split("```", 1)[0])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--select=F",
            str(sample),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


async def test_operate_metrics_and_log_redaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    operate = snippet("operate")
    sfu = SFU()
    sfu.create_room("r")
    registry = CollectorRegistry()
    operate.expose_metrics(sfu, registry)
    assert b"pysfu_rooms 1.0" in generate_latest(registry)

    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(handler)
    try:
        operate.keep_secrets_out_of_logs()
        logging.getLogger("aiortc.test").warning(
            "sdp: a=ice-pwd:%s\r\n", "s3cretS3cretS3cret0000"
        )
        written = handler.stream.getvalue()
    finally:
        logging.getLogger().removeHandler(handler)
    assert "a=ice-pwd:REDACTED" in written and "s3cret" not in written
