"""The app's recording (issue 18): ``pysfu serve --record-dir`` lets the host,
and only the host, record the room; everyone is told; the host lists,
downloads and deletes the WebM, muxed during the call (``--record-mode
live``, the default) or converted at the stop (``raw``); retention removes
old recordings. Real app process, aiortc host and guest."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import av
import pytest

from pysfu.messages import Error, Record, Recording

from ..example_server import HOST_KEY, example_server
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory
from ..ws_client import create_room, join
from .test_ws_example import connect

EBML_MAGIC = bytes.fromhex("1a45dfa3")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.2)


async def test_the_host_records_everyone_sees_it_and_only_the_host_downloads(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    record_dir = tmp_path / "recordings"
    async with example_server(f"--record-dir={record_dir}") as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host", name="Hana")
        _, guest_grant = await join(http, room["join_url"], name="Gus")
        # the host may record and gets the token that lists the recordings
        assert host_grant["recording"]["available"] is True
        token = host_grant["recording"]["token"]
        assert guest_grant["recording"] == {"available": True}  # no token
        host = peers(host_grant["participant_id"], 1)
        guest = peers(guest_grant["participant_id"], 2)
        host_ws = await connect(http, host, host_grant)
        guest_ws = await connect(http, guest, guest_grant)
        await guest.wait_video_from(host)
        await host.wait_video_from(guest)

        await guest_ws.send(Record(on=True))  # not the host: refused
        await eventually(
            lambda: any(e.code == "not_host" for e in guest.saw(Error)),
            what="not_host",
        )
        assert not host.saw(Recording)

        await host_ws.send(Record(on=True))
        await eventually(lambda: host.saw(Recording) == [Recording(True)])
        await eventually(lambda: guest.saw(Recording) == [Recording(True)])

        received = guest.track_from(host_grant["participant_id"], "video")
        assert received is not None
        start = len(received.patterns)
        room_dir = record_dir / quote(room["room"], safe="").replace(".", "%2E")

        def growing_file() -> Path | None:  # muxed live, under a hidden name
            found = list(room_dir.glob("*/*/*.webm"))
            return found[0] if found and found[0].stat().st_size > 0 else None

        await eventually(lambda: growing_file() is not None, what="a live file")
        live_file = growing_file()
        assert live_file is not None
        size = live_file.stat().st_size
        await eventually(
            lambda: len(received.patterns) - start >= 90, what="3 s of frames"
        )
        await eventually(lambda: live_file.stat().st_size > size, what="it grows")
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        async with http.get(api, headers=bearer(token)) as r:
            assert (await r.json())["recordings"] == []  # not listed until done
        await host_ws.send(Record(on=False))
        await eventually(lambda: host.saw(Recording)[-1:] == [Recording(False)])
        await eventually(lambda: guest.saw(Recording)[-1:] == [Recording(False)])
        listed: list[dict[str, object]] = []

        async def converted() -> bool:
            async with http.get(api, headers=bearer(token)) as response:
                assert response.status == 200
                listed[:] = (await response.json())["recordings"]
            return any(
                str(f["name"]).endswith(f"{host_grant['participant_id']}.webm")
                for f in listed
            )

        await asyncio.wait_for(until(converted), LIVENESS)
        name = next(
            str(f["name"])
            for f in listed
            if str(f["name"]).endswith(f"{host_grant['participant_id']}.webm")
        )
        assert {"Hana", "Gus"} <= {f["participant"] for f in listed}  # whose
        # the host downloads it, with its token or a host key
        for credential in (token, HOST_KEY):
            async with http.get(
                f"{api}/{quote(name)}", headers=bearer(credential)
            ) as r:
                assert r.status == 200
                body = await r.read()
        assert body[:4] == EBML_MAGIC
        path = tmp_path / "download.webm"
        path.write_bytes(body)
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0

        # nobody else: anonymous, the guest (its signalling token), a wrong token
        for headers in (
            {},
            bearer(guest_grant["signalling_token"]),
            bearer("not-a-token"),
        ):
            for url in (api, f"{api}/{quote(name)}"):
                async with http.get(url, headers=headers) as r:
                    assert r.status == 401
                    assert (await r.json())["error"] == "unauthorized"
        # names from the listing only: no path outside the room's recordings
        for bad in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "nope.webm"):
            async with http.get(f"{api}/{bad}", headers=bearer(token)) as r:
                assert r.status == 404
        assert not live_file.exists()  # renamed to what is listed
        await delete_as_the_host_only(http, api, name, token, guest_grant)
        assert sorted(p.name for p in room_dir.iterdir()) == sorted(
            p
            for f in listed
            if f["name"] != name
            for p in (str(f["name"]), f".{f['name']}.json")
        )  # the file and what it says gone, no directory left behind


async def delete_as_the_host_only(
    http: aiohttp.ClientSession,
    api: str,
    name: str,
    token: str,
    guest_grant: dict[str, object],
) -> None:
    """DELETE ``name``: refused to anyone but the host, names from the
    listing only, then gone from the listing and the disk."""
    for headers in ({}, bearer(str(guest_grant["signalling_token"])), bearer("x")):
        async with http.delete(f"{api}/{quote(name)}", headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "unauthorized"
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", f".{quote(name)}.json"):
        async with http.delete(f"{api}/{bad}", headers=bearer(token)) as r:
            assert r.status == 404  # not routed, or not listed
    async with http.delete(f"{api}/{quote(name)}", headers=bearer(token)) as r:
        assert r.status == 204
    async with http.get(api, headers=bearer(token)) as r:
        assert name not in [f["name"] for f in (await r.json())["recordings"]]
    for credential in (token, HOST_KEY):  # once only
        async with http.delete(f"{api}/{quote(name)}", headers=bearer(credential)) as r:
            assert r.status == 404


async def test_without_record_dir_nobody_records(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with example_server() as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        assert host_grant["recording"] == {"available": False}
        host = peers(host_grant["participant_id"], 1)
        host_ws = await connect(http, host, host_grant)
        await host_ws.send(Record(on=True))
        await eventually(
            lambda: any(e.code == "recording_disabled" for e in host.saw(Error)),
            what="recording_disabled",
        )
        assert not host.saw(Recording)
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        async with http.get(api, headers=bearer(HOST_KEY)) as r:
            assert (r.status, (await r.json())["error"]) == (404, "recording_disabled")


@pytest.mark.parametrize("mode", ["live", "raw"])
async def test_a_room_closing_while_recording_is_converted(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path, mode: str
) -> None:
    record_dir = tmp_path / "recordings"
    options = (f"--record-dir={record_dir}", f"--record-mode={mode}")
    async with example_server(*options) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, guest_grant = await join(http, room["join_url"])
        host = peers(host_grant["participant_id"], 1)
        guest = peers(guest_grant["participant_id"], 2)
        host_ws = await connect(http, host, host_grant)
        await connect(http, guest, guest_grant)
        received = await guest.wait_video_from(host)
        await host_ws.send(Record(on=True))
        await eventually(lambda: guest.saw(Recording) == [Recording(True)])
        start = len(received.patterns)
        await eventually(lambda: len(received.patterns) - start >= 30)
        await host_ws.ws.send_str('{"type": "leave"}')  # the host leaves: closed
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"

        listed: list[dict[str, object]] = []

        async def converted() -> bool:
            async with http.get(api, headers=bearer(HOST_KEY)) as response:
                listed[:] = (await response.json())["recordings"]
            return any(str(f["name"]).endswith(".webm") for f in listed)

        await asyncio.wait_for(until(converted), LIVENESS)
        name = next(str(f["name"]) for f in listed if str(f["name"]).endswith("webm"))
        async with http.get(f"{api}/{quote(name)}", headers=bearer(HOST_KEY)) as r:
            (tmp_path / "got.webm").write_bytes(await r.read())
        with av.open(str(tmp_path / "got.webm")) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
        # raw: the raw RTP is kept beside the converted file; live: none made
        raw = list(record_dir.rglob("*.pysfurec"))
        assert bool(raw) == (mode == "raw")


async def test_retention_removes_old_recordings_at_start_up(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """--record-keep-days: what is older goes when the app starts (and
    hourly), finished files and the leftovers of unfinished recordings alike;
    the rest stays listed."""
    room_dir = tmp_path / "recordings" / "old-room"
    room_dir.mkdir(parents=True)
    old, new = "20200101T000000Z-a.webm", "20991231T000000Z-b.webm"
    for name in (old, new):
        (room_dir / name).write_bytes(EBML_MAGIC)
        (room_dir / f".{name}.json").write_text('{"participant": "x"}')
    leftover = room_dir / "20200101T000000Z" / "old-room"
    leftover.mkdir(parents=True)
    (leftover / "raw.rtprec").write_bytes(b"raw")
    ten_days_ago = time.time() - 10 * 86400
    for path in (room_dir / old, leftover / "raw.rtprec", leftover, leftover.parent):
        os.utime(path, (ten_days_ago, ten_days_ago))
    options = (f"--record-dir={tmp_path / 'recordings'}", "--record-keep-days=7")
    async with example_server(*options) as base:
        api = f"{base}/api/rooms/old-room/recordings"

        async def pruned() -> bool:
            return not (room_dir / old).exists()

        await asyncio.wait_for(until(pruned), LIVENESS)
        async with http.get(api, headers=bearer(HOST_KEY)) as r:
            assert [f["name"] for f in (await r.json())["recordings"]] == [new]
    assert sorted(p.name for p in room_dir.iterdir()) == [f".{new}.json", new]


def test_record_dir_is_an_option_and_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pysfu.app.server import parse_args

    assert parse_args([]).record_dir is None  # off by default: no button
    assert parse_args(["--record-dir=/srv/rec"]).record_dir == "/srv/rec"
    monkeypatch.setenv("PYSFU_RECORD_DIR", "/srv/env")
    assert parse_args([]).record_dir == "/srv/env"
    assert parse_args(["--workers=2"]).record_dir == "/srv/env"  # workers record
    monkeypatch.delenv("PYSFU_RECORD_DIR")
    args = parse_args([])
    assert (args.record_mode, args.record_keep_days, args.record_max_gb) == (
        "live",  # the file exists during the call; nothing to convert at the stop
        None,  # kept until deleted
        None,
    )
    args = parse_args(["--record-mode=raw", "--record-keep-days=30"])
    assert (args.record_mode, args.record_keep_days) == ("raw", 30.0)
    monkeypatch.setenv("PYSFU_RECORD_MAX_GB", "2.5")
    assert parse_args([]).record_max_gb == 2.5
    for bad in ("--record-mode=mp3", "--record-keep-days=0", "--record-max-gb=-1"):
        with pytest.raises(SystemExit):
            parse_args([bad])
