"""The Record button of ``pysfu serve --record-dir`` in Chromium: the host
records, everyone sees the indicator, the host downloads the converted
recording from the page; a guest has no button. Screenshots of each state
go to ``$PYSFU_SCREENSHOTS`` if set (to look at), else the test's tmp dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import expect

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
    await host.page.screenshot(path=shots / "4-host-recordings-list.png")
    async with host.page.expect_download() as downloading:
        await link.click()
    download = await downloading.value
    saved = tmp_path / "downloaded.webm"
    await download.save_as(saved)
    assert saved.read_bytes()[:4] == EBML_MAGIC
    assert download.suggested_filename.endswith((".webm", ".mkv"))
