"""The app's recording with rooms in worker processes (``--workers N
--record-dir DIR``), and what it makes of a crash's leftovers (issue 18).

The worker holding a room records it and writes the files under DIR; the
main process lists, serves and deletes them. Real app process (two workers),
aiortc host and guest; the downloaded file is decoded with PyAV.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from urllib.parse import quote

import aiohttp
import av
import pytest

from pysfu.messages import Record, Recording

from ..example_server import HOST_KEY, example_server
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory, dominant_frequency
from ..ws_client import create_room, join
from .test_app_recording import EBML_MAGIC, bearer, until
from .test_ws_example import connect

HOST_TONE = 660.0
WORKERS = "--workers=2"


async def listed_recordings(
    http: aiohttp.ClientSession, api: str, token: str, *endings: str
) -> list[dict[str, object]]:
    """The room's listing, once a name ends with each of ``endings`` (bounded
    wait: each participant's file is finished and listed on its own)."""
    listed: list[dict[str, object]] = []

    async def found() -> bool:
        async with http.get(api, headers=bearer(token)) as response:
            assert response.status == 200
            listed[:] = (await response.json())["recordings"]
        names = [str(f["name"]) for f in listed]
        return all(any(n.endswith(e) for n in names) for e in endings)

    await asyncio.wait_for(until(found), LIVENESS)
    return listed


async def download(
    http: aiohttp.ClientSession, url: str, token: str, path: Path
) -> Path:
    async with http.get(url, headers=bearer(token)) as response:
        assert response.status == 200
        body = await response.read()
    assert body[:4] == EBML_MAGIC
    path.write_bytes(body)
    return path


def video_frames_and_tone(path: Path) -> tuple[int, float]:
    """Decoded video frames, and the dominant frequency of the audio."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    chunks = []
    rate = 48000
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            rate = frame.sample_rate
            chunks.append(frame.to_ndarray()[0].astype(float))
    return frames, dominant_frequency(chunks, rate) if chunks else 0.0


async def test_a_worker_room_is_recorded_and_the_main_process_serves_it(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    record_dir = tmp_path / "recordings"
    async with example_server(WORKERS, f"--record-dir={record_dir}") as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host", name="Hana")
        _, guest_grant = await join(http, room["join_url"], name="Gus")
        assert host_grant["recording"]["available"] is True
        token = host_grant["recording"]["token"]
        host_id = host_grant["participant_id"]
        host = peers(host_id, 1, tone=HOST_TONE)
        guest = peers(guest_grant["participant_id"], 2)
        host_ws = await connect(http, host, host_grant)
        await connect(http, guest, guest_grant)
        received = await guest.wait_video_from(host)
        await host.wait_video_from(guest)

        # the record message crosses to the worker; its notices come back
        await host_ws.send(Record(on=True))
        await eventually(lambda: host.saw(Recording) == [Recording(True)])
        await eventually(lambda: guest.saw(Recording) == [Recording(True)])
        room_dir = record_dir / quote(room["room"], safe="").replace(".", "%2E")

        def growing_file() -> Path | None:  # the worker writes under DIR/<room>/
            found = list(room_dir.glob("*/*/*.webm"))
            return found[0] if found and found[0].stat().st_size > 0 else None

        await eventually(lambda: growing_file() is not None, what="a live file")
        start = len(received.patterns)
        await eventually(
            lambda: len(received.patterns) - start >= 90, what="3 s of frames"
        )
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        async with http.get(api, headers=bearer(token)) as r:
            assert (await r.json())["recordings"] == []  # not listed while written
        await host_ws.send(Record(on=False))
        await eventually(lambda: host.saw(Recording)[-1:] == [Recording(False)])
        await eventually(lambda: guest.saw(Recording)[-1:] == [Recording(False)])

        listed = await listed_recordings(
            http, api, token, f"{host_id}.webm", f"{guest_grant['participant_id']}.webm"
        )
        name = next(
            str(f["name"]) for f in listed if str(f["name"]).endswith(f"{host_id}.webm")
        )
        assert {"Hana", "Gus"} <= {f["participant"] for f in listed}
        path = await download(http, f"{api}/{quote(name)}", token, tmp_path / "h.webm")
        frames, tone = video_frames_and_tone(path)
        assert frames >= 60  # 3 s were sent at 30 fps while it recorded
        assert abs(tone - HOST_TONE) < 20
        # the main process deletes what the worker wrote
        async with http.delete(f"{api}/{quote(name)}", headers=bearer(token)) as r:
            assert r.status == 204
        assert not (room_dir / name).exists()


@pytest.mark.parametrize("mode", ["live", "raw"])
async def test_a_worker_room_closing_while_recording_finishes_the_file(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path, mode: str
) -> None:
    record_dir = tmp_path / "recordings"
    options = (WORKERS, f"--record-dir={record_dir}", f"--record-mode={mode}")
    async with example_server(*options) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, guest_grant = await join(http, room["join_url"])
        host = peers(host_grant["participant_id"], 1, tone=HOST_TONE)
        guest = peers(guest_grant["participant_id"], 2)
        host_ws = await connect(http, host, host_grant)
        await connect(http, guest, guest_grant)
        received = await guest.wait_video_from(host)
        await host_ws.send(Record(on=True))
        await eventually(lambda: guest.saw(Recording) == [Recording(True)])
        start = len(received.patterns)
        await eventually(lambda: len(received.patterns) - start >= 30)
        await host_ws.ws.send_str('{"type": "leave"}')  # the room closes
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        ending = f"{host_grant['participant_id']}.webm"
        listed = await listed_recordings(http, api, HOST_KEY, ending)
        name = next(str(f["name"]) for f in listed if str(f["name"]).endswith(ending))
        path = await download(http, f"{api}/{quote(name)}", HOST_KEY, tmp_path / "c")
        frames, tone = video_frames_and_tone(path)
        assert frames > 0
        assert abs(tone - HOST_TONE) < 20


async def test_a_worker_that_dies_while_recording_leaves_a_listed_file(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    """SIGKILL of the worker processes: the main process lists what the
    worker holding the room had written, as ``-incomplete``, at once."""
    record_dir = tmp_path / "recordings"
    async with example_server(WORKERS, f"--record-dir={record_dir}") as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        host_id = host_grant["participant_id"]
        host = peers(host_id, 1, tone=HOST_TONE)
        host_ws = await connect(http, host, host_grant)
        await host_ws.send(Record(on=True))
        await eventually(lambda: host.saw(Recording) == [Recording(True)])
        room_dir = record_dir / quote(room["room"], safe="").replace(".", "%2E")
        await until_it_grows(room_dir)
        pid = base.process.pid
        workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(workers) == 2
        for worker in workers:  # one holds the room; the pool made both
            os.kill(int(worker), signal.SIGKILL)
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        ending = f"{host_id}-incomplete.webm"
        listed = await listed_recordings(http, api, HOST_KEY, ending)
        (entry,) = listed
        name = str(entry["name"])
        path = await download(http, f"{api}/{quote(name)}", HOST_KEY, tmp_path / "w")
        frames, tone = video_frames_and_tone(path)
        assert frames > 0
        assert abs(tone - HOST_TONE) < 20


async def until_it_grows(room_dir: Path) -> None:
    """Wait until the live file under ``room_dir`` holds a few clusters
    (each of at most a second reaches the disk as it closes)."""

    def live_size() -> int:
        found = list(room_dir.glob("*/*/*.webm"))
        return found[0].stat().st_size if found else 0

    await eventually(lambda: live_size() > 0, what="a live file")
    first = live_size()
    await eventually(lambda: live_size() > first + 50_000, what="it grows")


async def test_a_live_file_cut_short_by_a_crash_is_listed_at_the_next_start(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    """SIGKILL while recording leaves the live file under its unlisted
    name; the next start gives it a listed ``-incomplete`` name, and it
    plays up to about its last second."""
    record_dir = tmp_path / "recordings"
    async with example_server(f"--record-dir={record_dir}") as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        host_id = host_grant["participant_id"]
        host = peers(host_id, 1, tone=HOST_TONE)
        host_ws = await connect(http, host, host_grant)
        await host_ws.send(Record(on=True))
        await eventually(lambda: host.saw(Recording) == [Recording(True)])
        room_dir = record_dir / quote(room["room"], safe="").replace(".", "%2E")
        await until_it_grows(room_dir)
        base.process.kill()  # no shutdown: the file stays as it is
        base.process.wait(timeout=LIVENESS)
        assert list(room_dir.glob("*/*/*.webm"))
        await host.close()

    async with example_server(f"--record-dir={record_dir}") as base:
        api = f"{base}/api/rooms/{quote(room['room'], safe='')}/recordings"
        ending = f"{host_id}-incomplete.webm"
        listed = await listed_recordings(http, api, HOST_KEY, ending)
        (entry,) = listed
        assert entry["participant"] == host_id  # the display name was lost
        name = str(entry["name"])
        path = await download(http, f"{api}/{quote(name)}", HOST_KEY, tmp_path / "k")
        frames, tone = video_frames_and_tone(path)
        assert frames > 0
        assert abs(tone - HOST_TONE) < 20
        assert not list(room_dir.glob("*/*/*.webm"))  # no leftover left
        assert sorted(p.name for p in room_dir.iterdir()) == [f".{name}.json", name]
