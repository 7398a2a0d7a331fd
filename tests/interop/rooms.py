"""Users of either browser in a room of the flagship app (examples/ws_sfu.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .browser.harness import HOST_KEY, LIVENESS, Server, User, wait_for
from .firefox import FirefoxUser


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


async def host_a_room(host: AnyUser, server: Server, query: str = "") -> str:
    """``host`` opens /new#key=..., which creates a room and opens it as
    host; returns the link the host shares."""
    await host.open(f"{server.base_url}/new?name={host.name}{query}#key={HOST_KEY}")

    async def in_the_room() -> bool:
        return "/r/" in await host.url()

    await wait_for(in_the_room, f"{host.name}'s page to open the room")
    await host.wait_status("waiting for the participant")
    link = await host.evaluate("document.getElementById('join-link').value")
    assert link.startswith(server.base_url + "/r/"), link
    return str(link)
