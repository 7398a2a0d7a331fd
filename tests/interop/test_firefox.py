"""Firefox and Chromium in one room of the flagship app (examples/ws_sfu.py).

Firefox is a second browser engine with its own SDP habits. Each side must
decode the other's video (a moving, detailed picture: frames keep coming, the
picture is not a flat colour and changes) and receive its audio, and the
server must drop no packet for its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ..browser.harness import HOST_KEY, LIVENESS, Browser, Server, User, wait_for
from .firefox import Firefox, FirefoxUser
from .observe import assert_none_dropped_for_size, assert_sees_and_hears

pytestmark = pytest.mark.interop


@dataclass
class ChromiumUser:
    """A Chromium ``harness.User`` with the interface of :class:`FirefoxUser`."""

    user: User

    @property
    def name(self) -> str:
        return self.user.name

    async def evaluate(self, expression: str) -> Any:
        return await self.user.page.evaluate(expression)

    async def open(self, url: str) -> None:
        await self.user.open(url)

    async def url(self) -> str:
        return str(self.user.page.url)

    async def wait_status(self, text: str, timeout: float = LIVENESS) -> None:
        await self.user.wait_status(text, timeout)

    async def stats(self) -> dict[str, Any]:
        return await self.user.stats()

    async def participant_id(self) -> str:
        return await self.user.participant_id()


AnyUser = ChromiumUser | FirefoxUser


async def host_a_room(host: AnyUser, server: Server) -> str:
    """``host`` opens /new#key=..., which creates a room and opens it as
    host; returns the link the host shares."""
    await host.open(f"{server.base_url}/new?name={host.name}#key={HOST_KEY}")

    async def in_the_room() -> bool:
        return "/r/" in await host.url()

    await wait_for(in_the_room, f"{host.name}'s page to open the room")
    await host.wait_status("waiting for the participant")
    link = await host.evaluate("document.getElementById('join-link').value")
    assert link.startswith(server.base_url + "/r/"), link
    return str(link)


async def meet(host: AnyUser, guest: AnyUser, server: Server) -> None:
    """``host`` starts a room, ``guest`` joins it; they see and hear each other."""
    link = await host_a_room(host, server)
    await guest.open(f"{link}?name={guest.name}")
    await guest.wait_status("connected")
    await host.wait_status("connected")
    host_id, guest_id = await host.participant_id(), await guest.participant_id()
    await assert_sees_and_hears(guest, host_id, host.name)
    await assert_sees_and_hears(host, guest_id, guest.name)
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
