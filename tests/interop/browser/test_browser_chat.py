"""The example page's chat (the relayed data channel) and speaker highlight, in
Chromium. What is asserted is what the users see: chat lines with the right
names, markup shown as text, and the ring around the tile of who speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import expect

from .harness import LIVENESS, Browser, Server, User, chromium, tone_wav, wait_for
from .test_browser_room import connected_pair, open_as_host, open_as_participant


async def say(user: User, text: str) -> None:
    await expect(user.page.locator("#chat-input")).to_be_enabled(
        timeout=LIVENESS * 1000
    )
    await user.page.fill("#chat-input", text)
    await user.page.press("#chat-input", "Enter")


async def chat_lines(user: User) -> list[dict[str, str | None]]:
    lines: list[dict[str, str | None]] = await user.page.evaluate("window.pysfu.chat()")
    return lines


async def test_chat_between_two_pages(
    browser: Browser, start_server: Callable[..., Server]
) -> None:
    server = start_server()
    alice, bob = await connected_pair(browser, server)
    bob_id = await bob.participant_id()
    markup = '<img src=x onerror="window.hacked=1"><b>hi</b> & bye'
    await say(bob, markup)

    log = alice.page.locator("#chat-log li")
    await expect(log).to_have_count(1, timeout=LIVENESS * 1000)
    await expect(log).to_have_text(f"Bob{markup}")  # shown as text, not markup
    assert await alice.page.locator("#chat-log img, #chat-log b").count() == 0
    assert await alice.page.evaluate("window.hacked") is None
    assert await chat_lines(alice) == [{"from": bob_id, "name": "Bob", "text": markup}]
    # Bob sees his own line once, not echoed back by the server
    assert await chat_lines(bob) == [{"from": bob_id, "name": "you", "text": markup}]

    await say(alice, "hello Bob")
    await wait_for(
        lambda: _has_line(bob, "Alice", "hello Bob"), "Alice's answer at Bob's"
    )
    assert len(await chat_lines(bob)) == 2


async def _has_line(user: User, name: str, text: str) -> bool:
    return any(
        line["name"] == name and line["text"] == text for line in await chat_lines(user)
    )


@pytest.fixture
async def loud_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A Chromium whose fake microphone plays a steady tone."""
    wav = tone_wav(tmp_path / "tone.wav")
    async with chromium(f"--use-file-for-fake-audio-capture={wav}") as launched:
        yield launched


async def test_the_page_highlights_who_speaks(
    browser: Browser, loud_browser: Browser, start_server: Callable[..., Server]
) -> None:
    server = start_server()
    alice = await open_as_host(loud_browser, server)  # plays a tone
    bob = await open_as_participant(browser, alice, "Bob")
    await bob.wait_status("connected")
    # Chromium's default fake microphone beeps loud enough to count as
    # speech (about -30 dBov averaged): Bob mutes to leave the floor to Alice.
    await bob.page.click("#mute-audio")
    alice_id = await alice.participant_id()

    async def speakers_at_bob() -> list[dict[str, object]]:
        speakers: list[dict[str, object]] = await bob.page.evaluate(
            "window.pysfu.speakers"
        )
        return speakers

    async def only_alice_speaks() -> bool:
        speakers = await speakers_at_bob()
        active = await bob.page.evaluate("window.pysfu.activeSpeaker")
        return active == alice_id and [s["participant_id"] for s in speakers] == [
            alice_id
        ]

    await wait_for(only_alice_speaks, "Alice highlighted at Bob's")
    tile = bob.page.locator(f'.tile[data-participant="{alice_id}"]')
    await expect(tile).to_have_class("tile remote speaking active-speaker")
    level = (await speakers_at_bob())[0]["level"]
    assert isinstance(level, int) and -60 < level < 0
    # Alice's own page rings her own tile, and nobody else's
    await expect(alice.page.locator(".tile.local")).to_have_class(
        "tile local speaking active-speaker", timeout=LIVENESS * 1000
    )
    assert await bob.page.locator(".tile.local.speaking").count() == 0

    await alice.page.click("#mute-audio")  # Chromium now sends silence

    async def silence() -> bool:
        return await bob.page.evaluate("window.pysfu.activeSpeaker") is None

    await wait_for(silence, "silence at Bob's")
    await expect(tile).to_have_class("tile remote", timeout=LIVENESS * 1000)
