"""The example server and its browser client, end to end, in real Chromium.

Each test drives users (isolated browser contexts) through the pages a person
would open and asserts on what they observe: the status line, the remote
tiles, and media that keeps arriving (the browser's own getStats()). No
timing is asserted; every wait is a generous liveness bound.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import pytest
from playwright.async_api import expect

from .harness import (
    HOST_KEY,
    LIVENESS,
    TURN_PASSWORD,
    TURN_USER,
    Browser,
    Server,
    Turn,
    User,
    wait_for,
)

# -- steps ------------------------------------------------------------------------


async def open_as_host(browser: Browser, server: Server, query: str = "") -> User:
    """Alice opens /new#key=..., which creates a room and opens it as host."""
    host = await browser.user("Alice")
    room: dict[str, Any] = {}  # the answer to POST /api/rooms

    async def record(route: Any) -> None:
        response = await route.fetch()
        room.update(await response.json())
        await route.fulfill(response=response)

    await host.page.route("**/api/rooms", record)
    await host.open(f"{server.base_url}/new?name=Alice{query}#key={HOST_KEY}")
    await host.page.wait_for_url("**/r/**", timeout=LIVENESS * 1000)
    assert "role=host" in host.page.url
    assert "key=" not in host.page.url, "the host key stays out of the address bar"
    await host.wait_status("waiting for the participant")
    # the link the host shares (what "copy-link" copies) is the room's join_url,
    # shown with its emoji
    join_link = host.page.locator("#join-link")
    await expect(join_link).to_have_value(unquote(room["join_url"]))
    return host


async def open_as_participant(
    browser: Browser, host: User, name: str, query: str = ""
) -> User:
    user = await browser.user(name)
    link = await host.page.locator("#join-link").input_value()
    await user.open(f"{link}?name={name}{query}")
    return user


async def connected_pair(
    browser: Browser, server: Server, query: str = ""
) -> tuple[User, User]:
    """A host and a participant in a new room, both seeing "connected"."""
    host = await open_as_host(browser, server, query)
    guest = await open_as_participant(browser, host, "Bob", query)
    await guest.wait_status("connected")
    await host.wait_status("connected")
    return host, guest


async def join_over_http(server: Server, user: User, name: str) -> Any:
    """POST /api/rooms/<room>/join for the room ``user`` is in."""
    room = (await user.join_response())["room"]
    return await server.post(f"/api/rooms/{quote(room)}/join", {"name": name})


# -- what a user observes -----------------------------------------------------------


def inbound(stats: dict[str, Any], kind: str, sender: str) -> dict[str, Any] | None:
    """The inbound RTP stream of ``kind`` published by participant ``sender``."""
    for entry in stats["inbound"]:
        if entry["kind"] == kind and entry["participant"] == sender:
            return dict(entry)
    return None


async def assert_receives(receiver: User, sender: User) -> dict[str, Any]:
    """``receiver`` keeps decoding ``sender``'s video and receiving its audio.

    Returns the receiver's latest inbound video stats.
    """
    sender_id = await sender.participant_id()
    latest: dict[str, Any] = {}

    async def streams() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        latest.update(await receiver.stats())
        return inbound(latest, "video", sender_id), inbound(latest, "audio", sender_id)

    async def started() -> Any:
        video, audio = await streams()
        ok = video and audio and video["framesDecoded"] and audio["packetsReceived"]
        return (video, audio) if ok else None

    def details() -> str:
        return f"{receiver.name}'s stats: {json.dumps(latest, indent=1)}"

    what = f"{receiver.name} to receive {sender.name}'s media"
    video0, audio0 = await wait_for(started, what, details=details)

    async def rising() -> dict[str, Any] | None:
        video, audio = await streams()
        ok = (
            video
            and audio
            and video["framesDecoded"] > video0["framesDecoded"] + 10
            and audio["packetsReceived"] > audio0["packetsReceived"] + 10
            and audio["totalAudioEnergy"] > 0  # Chromium's fake microphone beeps
        )
        return video if ok else None

    result: dict[str, Any] = await wait_for(
        rising, f"{what} to keep flowing", details=details
    )
    return result


async def assert_tiles(user: User, *names: str) -> None:
    """The remote tiles ``user`` sees, by their labels."""
    captions = user.page.locator(".tile.remote figcaption")
    await expect(captions).to_have_text(list(names), timeout=LIVENESS * 1000)


# -- tests --------------------------------------------------------------------------


#: the example's rooms in its own process, or in two worker processes
ROOMS_IN = pytest.mark.parametrize(
    "rooms_option", [(), ("--workers=2",)], ids=["in-process", "workers"]
)


@ROOMS_IN
async def test_host_and_participant_see_and_hear_each_other(
    start_server: Any, browser: Browser, rooms_option: tuple[str, ...]
) -> None:
    server = start_server(*rooms_option)
    host, guest = await connected_pair(browser, server)

    await assert_receives(guest, host)
    await assert_receives(host, guest)
    await assert_tiles(host, "Bob")
    await assert_tiles(guest, "Alice")

    await guest.page.click("#mute-audio")
    await expect(guest.page.locator("#mute-audio")).to_have_text("Unmute microphone")
    await guest.page.click("#mute-video")
    await expect(guest.page.locator("#mute-video")).to_have_text("Turn camera on")


async def test_a_second_participant_finds_the_room_full(
    start_server: Any, browser: Browser
) -> None:
    server = start_server("--max-participants=1")
    host, guest = await connected_pair(browser, server)

    late = await open_as_participant(browser, host, "Carol")
    await late.wait_status("room full")
    reply = await join_over_http(server, host, "Dave")
    assert (reply.status, reply.body["error"]) == (409, "room_full")

    # the two in the room go on undisturbed
    await assert_receives(guest, host)
    await assert_receives(host, guest)
    await assert_tiles(host, "Bob")
    await assert_tiles(guest, "Alice")


async def test_a_participant_leaves_and_another_takes_the_seat(
    start_server: Any, browser: Browser
) -> None:
    server = start_server("--max-participants=1")
    host, guest = await connected_pair(browser, server)

    await guest.page.click("#leave")
    await guest.wait_status("left")
    await host.wait_status("waiting for the participant")
    await assert_tiles(host)

    second = await open_as_participant(browser, host, "Carol")
    await second.wait_status("connected")
    await host.wait_status("connected")
    await assert_receives(second, host)
    await assert_receives(host, second)
    await assert_tiles(host, "Carol")
    await assert_tiles(second, "Alice")


@ROOMS_IN
async def test_the_page_reconnects_its_signalling_and_media_goes_on(
    start_server: Any, browser: Browser, rooms_option: tuple[str, ...]
) -> None:
    server = start_server("--reconnect-grace=20", *rooms_option)
    host, guest = await connected_pair(browser, server)

    await guest.page.evaluate("window.pysfu.dropSignalling()")

    async def showed_reconnecting() -> bool:
        history = await guest.page.evaluate("window.pysfu.statusHistory()")
        return "reconnecting" in history[-3:]

    await wait_for(showed_reconnecting, "the page to show it reconnects")
    await guest.wait_status("connected")
    await assert_receives(host, guest)  # media never stopped
    await assert_receives(guest, host)
    # the resumed session is fully usable: leaving through it reaches the host
    await guest.page.click("#leave")
    await host.wait_status("waiting for the participant")


async def test_a_wrong_host_key_is_refused(start_server: Any, browser: Browser) -> None:
    server = start_server()
    for key in ("wrong", None):
        reply = await server.post("/api/rooms", {}, host_key=key)
        assert (reply.status, reply.body["error"]) == (401, "unauthorized")

    intruder = await browser.user("intruder")
    await intruder.open(f"{server.base_url}/new#key=wrong")
    await intruder.wait_status("error: wrong host key")
    assert "/new" in intruder.page.url  # no room was opened


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_each_side_decodes_the_codec_the_other_chose(
    start_server: Any, browser: Browser, codec: str
) -> None:
    server = start_server()
    host, guest = await connected_pair(browser, server, f"&codec={codec}")

    for receiver, sender in ((guest, host), (host, guest)):
        video = await assert_receives(receiver, sender)
        assert video["codec"] == f"video/{codec}", video


#: The video sender's encodings: rid, scale, maxBitrate, maxFramerate.
ENCODINGS_JS = """
() => window.pysfu.pc.getSenders()
  .filter((s) => s.track && s.track.kind === 'video')
  .flatMap((s) => s.getParameters().encodings)
  .map((e) => [e.rid || null, e.scaleResolutionDownBy || null,
               e.maxBitrate || null, e.maxFramerate || null])
"""


async def test_with_simulcast_the_page_sets_each_layers_encoding(
    start_server: Any, browser: Browser
) -> None:
    server = start_server("--simulcast")
    host, guest = await connected_pair(browser, server)
    await assert_receives(guest, host)
    # SIMULCAST_LAYERS of pysfu-client.js, on the encodings the offer made
    assert await host.page.evaluate(ENCODINGS_JS) == [
        ["q", 4, 300_000, 30],
        ["h", 2, 700_000, 30],
        ["f", 1, 1_500_000, 30],
    ]
    # without simulcast: one encoding, left as the browser made it
    plain = start_server()
    host, guest = await connected_pair(browser, plain)
    await assert_receives(guest, host)
    assert await host.page.evaluate(ENCODINGS_JS) == [[None, None, None, None]]


async def test_media_flows_through_a_turn_relay(
    start_server: Any, browser: Browser, coturn: Turn
) -> None:
    server = start_server(
        f"--turn={coturn.url}",
        f"--turn-username={TURN_USER}",
        f"--turn-password={TURN_PASSWORD}",
    )
    host, guest = await connected_pair(browser, server, "&relay=1")

    await assert_receives(guest, host)
    await assert_receives(host, guest)
    for user in (host, guest):
        pair = (await user.stats())["candidatePair"]
        assert pair is not None and pair["state"] == "succeeded", pair
        assert pair["local"]["candidateType"] == "relay", pair


async def test_the_participant_sees_the_host_leave(
    start_server: Any, browser: Browser
) -> None:
    server = start_server()
    host, guest = await connected_pair(browser, server)

    await host.page.click("#leave")
    await host.wait_status("left")
    await guest.wait_status("host left")
    await assert_tiles(guest)
    reply = await join_over_http(server, guest, "Eve")
    assert (reply.status, reply.body["error"]) == (404, "room_not_found")
