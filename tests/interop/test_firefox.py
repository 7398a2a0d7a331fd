"""Firefox and Chromium in one room of the flagship app (examples/ws_sfu.py).

Firefox is a second browser engine with its own SDP habits. Each side must
decode the other's video (a moving, detailed picture: frames keep coming, the
picture is not a flat colour and changes) and receive its audio, and the
server must drop no packet for its size.
"""

from __future__ import annotations

from typing import Any

import pytest

from .browser.harness import Browser, Server, wait_for
from .firefox import Firefox
from .observe import (
    assert_none_dropped_for_size,
    assert_sees_and_hears,
    inbound,
)
from .rooms import AnyUser, ChromiumUser, host_a_room

pytestmark = pytest.mark.interop


async def meet(host: AnyUser, guest: AnyUser, server: Server) -> None:
    """``host`` starts a room, ``guest`` joins it; they see and hear each other."""
    link = await host_a_room(host, server)
    await guest.open(f"{link}?name={guest.name}")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    host_id, guest_id = await host.participant_id(), await guest.participant_id()
    for receiver, sender, sender_id in (
        (guest, host, host_id),
        (host, guest, guest_id),
    ):
        video = await assert_sees_and_hears(receiver, sender_id, sender.name)
        print(f"{receiver.name} decodes {sender.name}'s {video['codec']}")
    assert_none_dropped_for_size(server.base_url)


async def test_firefox_hosts_and_chromium_joins(
    start_server: Any, browser: Browser, gecko: Firefox
) -> None:
    server = start_server()
    host = await gecko.user("Alice")
    guest = ChromiumUser(await browser.user("Bob"))
    await meet(host, guest, server)


async def test_chromium_hosts_and_firefox_joins(
    start_server: Any, browser: Browser, gecko: Firefox
) -> None:
    server = start_server()
    host = ChromiumUser(await browser.user("Alice"))
    guest = await gecko.user("Bob")
    await meet(host, guest, server)


async def test_two_firefox_users(start_server: Any, gecko: Firefox) -> None:
    server = start_server()
    host = await gecko.user("Alice")
    guest = await gecko.user("Bob")
    await meet(host, guest, server)


async def test_firefox_joins_a_chromium_host_sending_h264(
    start_server: Any, browser: Browser, gecko: Firefox
) -> None:
    """Firefox cannot decode the host's H.264: it must still publish, see the
    host's tile, and hear the host."""
    server = start_server()
    host = ChromiumUser(await browser.user("Alice"))
    link = await host_a_room(host, server, "&codec=H264")
    guest = await gecko.user("Bob")
    await guest.open(f"{link}?name=Bob")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    host_id, guest_id = await host.participant_id(), await guest.participant_id()
    await assert_sees_and_hears(host, guest_id, guest.name)

    async def hears() -> bool:
        audio = inbound(await guest.stats(), "audio", host_id)
        return bool(audio and audio["totalAudioEnergy"] > 0)

    await wait_for(hears, "Bob to hear Alice")
