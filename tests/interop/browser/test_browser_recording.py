"""The Record button of ``pysfu serve --record-dir`` in Chromium: the host
records, everyone sees the indicator, the host downloads the converted
recording from the page; a guest has no button. Screenshots of each state
go to ``$PYSFU_SCREENSHOTS`` if set (to look at), else the test's tmp dir.
And what a Chromium host and an aiortc guest recorded this way holds:
every frame, the beep, in sync."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from playwright.async_api import expect

from ...integration.test_recording import FPS, decode
from ...integration.test_recording_live import replay_live
from ...integration.test_ws_example import connect
from ...peers import PeerFactory
from ...ws_client import join
from .harness import HOST_KEY, Browser, wait_for

EBML_MAGIC = bytes.fromhex("1a45dfa3")


async def test_the_host_records_from_the_page_and_downloads_it(
    start_server: Any, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("PYSFU_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    server = start_server(f"--record-dir={tmp_path / 'recordings'}")
    created = await server.post("/api/rooms", {}, host_key=HOST_KEY)
    host = await browser.user("Alice")
    page, ticket = created.body["host_url"].split("#")
    await host.open(f"{page}&name=Alice#{ticket}")
    guest = await browser.user("Bob")
    await guest.open(created.body["join_url"] + "?name=Bob")
    await host.wait_status("connected")
    await guest.wait_status("connected")
    record = host.page.locator("#record")
    await expect(record).to_have_text("Record")
    await expect(guest.page.locator("#record")).to_be_hidden()
    await expect(host.page.locator("#recording-indicator")).to_be_hidden()
    await host.page.screenshot(path=shots / "1-host-not-recording.png")

    await record.click()
    for user in (host, guest):
        await expect(user.page.locator("#recording-indicator")).to_be_visible()
        await expect(user.page.locator("#recording-indicator")).to_have_text(
            "● Recording"
        )
    await expect(record).to_have_text("Stop recording")
    await host.page.screenshot(path=shots / "2-host-recording.png")
    await guest.page.screenshot(path=shots / "3-guest-recording.png")

    # a few seconds of frames, counted by what the guest decodes
    async def decoded() -> int:
        inbound = (await guest.stats())["inbound"]
        return sum(s["framesDecoded"] for s in inbound if s["kind"] == "video")

    start = await decoded()

    async def enough() -> bool:
        return await decoded() - start >= 90

    await wait_for(enough, "3 s of video decoded by the guest")
    await record.click()
    for user in (host, guest):
        await expect(user.page.locator("#recording-indicator")).to_be_hidden()
    link = host.page.locator("#recordings-list a").first
    await expect(host.page.locator("#recordings-list a")).to_have_count(2)
    await expect(host.page.locator("#recordings-list")).to_contain_text("Alice, ")
    await expect(host.page.locator("#recordings-list")).to_contain_text("Bob, ")
    await expect(host.page.locator("#recordings-list button.delete")).to_have_count(2)
    await host.page.screenshot(path=shots / "4-host-recordings-list.png")
    async with host.page.expect_download() as downloading:
        await link.click()
    download = await downloading.value
    saved = tmp_path / "downloaded.webm"
    await download.save_as(saved)
    assert saved.read_bytes()[:4] == EBML_MAGIC
    assert download.suggested_filename.endswith((".webm", ".mkv"))

    # the host deletes Bob's file from the list, after saying yes
    dialogs: list[str] = []

    async def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await (dialog.dismiss() if len(dialogs) == 1 else dialog.accept())

    host.page.on("dialog", answer)
    bob = host.page.locator("#recordings-list li", has_text="Bob, ")
    await bob.locator("button.delete").click()  # dismissed: still there
    await expect(host.page.locator("#recordings-list li")).to_have_count(2)
    await bob.locator("button.delete").click()
    await expect(host.page.locator("#recordings-list li")).to_have_count(1)
    await expect(host.page.locator("#recordings-list")).not_to_contain_text("Bob, ")
    assert len(dialogs) == 2 and "Bob" in dialogs[0]
    await host.page.screenshot(path=shots / "5-host-deleted-one.png")
    left = [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]
    (kept,) = [p for p in left if not p.name.startswith(".")]  # Alice's only
    assert {p.name for p in left} == {kept.name, f".{kept.name}.json"}
    assert "Alice" in (kept.parent / f".{kept.name}.json").read_text()


@pytest.mark.parametrize("mode", ["live", "raw"])
async def test_a_recorded_chromium_host_and_aiortc_guest_decode_every_frame(
    start_server: Any, browser: Browser, peers: PeerFactory, tmp_path: Path, mode: str
) -> None:
    """10 s of a Chromium host (fake camera, fake microphone beeping at 400 Hz)
    and an aiortc guest, recorded by the app, muxed during the call (live) or
    converted at the stop (raw): every frame the browser encoded while
    recording is in the file, the beep is there, and audio and video start
    together."""
    record_dir = tmp_path / "recordings"
    server = start_server(f"--record-dir={record_dir}", f"--record-mode={mode}")
    created = await server.post("/api/rooms", {}, host_key=HOST_KEY)
    host = await browser.user("Alice")
    page, ticket = created.body["host_url"].split("#")
    await host.open(f"{page}&name=Alice#{ticket}")
    await host.wait_status("waiting for the participant")
    host_id = await host.participant_id()
    async with aiohttp.ClientSession() as http:
        _, grant = await join(http, created.body["join_url"], name="Gus")
        guest = peers(grant["participant_id"], 2)
        await connect(http, guest, grant)
        await host.wait_status("connected")
        await guest.wait_track(host_id, "video")

        async def encoded() -> int:
            outbound = (await host.stats())["outbound"]
            # the top layer is recorded: the stream with the most frames
            return max(s["framesEncoded"] for s in outbound if s["kind"] == "video")

        async def warmed_up() -> bool:  # the encoder past its first seconds
            return await encoded() >= 60

        await wait_for(warmed_up, "the host's first 60 frames")
        record = host.page.locator("#record")
        indicator = host.page.locator("#recording-indicator")
        before_start = await encoded()
        await record.click()
        await expect(indicator).to_be_visible()
        after_start = await encoded()
        await asyncio.sleep(10)  # what is recorded, not an assertion on time
        before_stop = await encoded()
        await record.click()
        await expect(indicator).to_be_hidden()
        after_stop = await encoded()
        await expect(host.page.locator("#recordings-list a")).to_have_count(2)

    def file_of(participant: str) -> Path:
        (found,) = record_dir.rglob(f"*-{participant}.webm")
        return found

    frames, audio, rate, audio_start = decode_all(file_of(host_id))
    # every frame the browser encoded while recording (from the keyframe that
    # starts it, asked for within the click's round trip), none more
    print(f"host: {len(frames)} frames; encoded {before_start} {after_start}")
    print(f"  ... {before_stop} {after_stop}")
    assert 0.98 * (before_stop - after_start) <= len(frames)
    assert len(frames) <= 1.02 * (after_stop - before_start)
    # Chromium's fake microphone: a 400 Hz beep every 500 ms
    assert abs(peak_frequency(audio, rate) - 400) < 20
    assert abs(audio_start - frames[0]) < 0.1
    # the aiortc guest's file: every picture shows its pattern
    guest_frames, _, _, _ = decode(file_of(grant["participant_id"]))
    assert len(guest_frames) > 5 * FPS
    if mode == "live":
        return

    # Chromium's packets muxed live (replayed from the raw files in arrival
    # order) give the same file
    raw = sorted(record_dir.rglob(f"*-{host_id}%2F*.pysfurec"))
    assert len(raw) == 2
    muxer = replay_live(raw, tmp_path / "live.webm")
    assert muxer.aligned_by == "sender_reports" and muxer.error is None
    live_frames, live_audio, live_rate, live_audio_start = decode_all(muxer.path)
    print(f"live: {len(live_frames)} frames")
    assert abs(len(live_frames) - len(frames)) <= 1
    assert abs(peak_frequency(live_audio, live_rate) - 400) < 20
    assert abs(live_audio_start - live_frames[0]) < 0.1


def peak_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[int(spectrum.argmax())])


def decode_all(path: Path) -> tuple[list[float], np.ndarray, int, float]:
    """The video frames' times (every one must decode), the audio's first
    channel, its rate and its first sample's time."""
    with av.open(str(path)) as container:
        frames = [float(f.time) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        chunks, rate, first = [], 48000, None
        for audio in container.decode(audio=0):
            first = float(audio.time) if first is None else first
            rate = audio.sample_rate
            chunks.append(audio.to_ndarray()[0])
    return frames, np.concatenate(chunks).astype(float), rate, first or 0.0
