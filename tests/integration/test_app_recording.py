"""The app's recording (issue 18): ``pysfu serve --record-dir`` lets the host,
and only the host, record the room; everyone is told; the host lists and
downloads the converted WebM. Real app process, aiortc host and guest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


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
        await eventually(
            lambda: len(received.patterns) - start >= 90, what="3 s of frames"
        )
        await host_ws.send(Record(on=False))
        await eventually(lambda: host.saw(Recording)[-1:] == [Recording(False)])
        await eventually(lambda: guest.saw(Recording)[-1:] == [Recording(False)])

        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
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


async def test_a_room_closing_while_recording_is_converted(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    record_dir = tmp_path / "recordings"
    async with example_server(f"--record-dir={record_dir}") as base:
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

        async def converted() -> bool:
            async with http.get(api, headers=bearer(HOST_KEY)) as response:
                listed = (await response.json())["recordings"]
            return any(str(f["name"]).endswith(".webm") for f in listed)

        await asyncio.wait_for(until(converted), LIVENESS)


def test_record_dir_is_an_option_and_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pysfu.app.server import parse_args

    assert parse_args([]).record_dir is None  # off by default: no button
    assert parse_args(["--record-dir=/srv/rec"]).record_dir == "/srv/rec"
    monkeypatch.setenv("PYSFU_RECORD_DIR", "/srv/env")
    assert parse_args([]).record_dir == "/srv/env"
    with pytest.raises(SystemExit):  # rooms in workers have no hook yet
        parse_args(["--workers=2"])
