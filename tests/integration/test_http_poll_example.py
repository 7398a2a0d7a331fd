"""examples/http_poll_sfu.py, the HTTP long-polling signalling adapter, run as a
real process on 127.0.0.1 with real aiortc clients."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from pysfu.signalling import ClientMessage, ServerMessage, to_json

from ..example_server import ROOT, run_example
from ..helpers import LIVENESS, eventually
from ..peers import PeerFactory
from ..ws_client import parse_server_message

EXAMPLE = ROOT / "examples" / "http_poll_sfu.py"


def poll_server(*options: str) -> contextlib.AbstractAsyncContextManager[str]:
    return run_example(EXAMPLE, *options)


# --8<-- [start:client]
class PollClient:
    """A client of the long-polling protocol, with the interface Peer.attach uses:
    ``inbox`` (server messages as dataclasses) and ``send()``."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base = http, base
        self.headers = {"Authorization": f"Bearer {token}"}  # the session's secret
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.raw: list[dict[str, Any]] = []
        self.after = 0
        self.final_status: int | None = None
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            url, query = f"{self.base}/poll", {"after": self.after}
            async with self.http.get(
                url, params=query, headers=self.headers
            ) as response:
                if response.status != 200:
                    self.final_status = response.status
                    return
                for message in (await response.json())["messages"]:
                    assert message["seq"] == self.after + 1, "a message was skipped"
                    self.after = message.pop("seq")
                    self.raw.append(message)
                    self.inbox.put_nowait(parse_server_message(message))

    async def send(self, message: ClientMessage) -> None:
        await self.send_text(to_json(message))
        # --8<-- [end:client]

    async def send_text(self, body: Any) -> None:
        url = f"{self.base}/send"
        async with self.http.post(url, json=body, headers=self.headers) as response:
            assert response.status == 204

    def saw(self, kind: str, **fields: Any) -> bool:
        return any(
            m["type"] == kind and all(m.get(k) == v for k, v in fields.items())
            for m in self.raw
        )

    async def close(self) -> None:
        self._poller.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._poller  # may have failed already: the server stopped


async def join(
    http: aiohttp.ClientSession, base: str, room: str, body: Any = None
) -> tuple[int, Any]:
    async with http.post(f"{base}/rooms/{room}/join", json=body) as response:
        return response.status, await response.json()


async def test_host_and_guest_see_and_hear_each_other(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with poll_server("--room=demo") as base:
        status, host_grant = await join(http, base, "demo", {"role": "host"})
        assert status == 201
        status, guest_grant = await join(http, base, "demo")
        assert status == 201
        host_id, guest_id = host_grant["participant_id"], guest_grant["participant_id"]
        host_client = PollClient(http, base, host_grant["token"])
        guest_client = PollClient(http, base, guest_grant["token"])
        host = peers(host_id, 1, tone=440).attach(host_client)
        guest = peers(guest_id, 2, tone=1000).attach(guest_client)

        assert (await guest.wait_video_from(host)).codes() == {1}
        assert (await host.wait_video_from(guest)).codes() == {2}
        assert abs((await host.wait_audio_from(guest)).frequency() - 1000) < 20
        assert host_client.raw[0]["type"] == "joined"
        assert host_client.saw("participant-joined", participant_id=guest_id)

        # leaving: the host is told, the guest's session ends, the seat is free
        await guest_client.send_text({"type": "leave"})
        await eventually(
            lambda: host_client.saw("participant-left", participant_id=guest_id),
            what="participant-left",
        )
        await eventually(
            lambda: guest_client.final_status == 410, what="the guest's poll ends"
        )
        assert (await join(http, base, "demo"))[0] == 201


async def test_join_errors_and_bad_messages(http: aiohttp.ClientSession) -> None:
    async with poll_server("--room=a", "--room=b") as base:
        assert await join(http, base, "nope") == (
            404,
            {"error": "room_not_found", "message": "no room nope"},
        )
        status, body = await join(http, base, "a", {"role": "mayor"})
        assert (status, body["error"]) == (400, "bad_request")
        async with http.post(f"{base}/rooms/a/join", data="{") as response:
            assert response.status == 400
        status, host = await join(http, base, "a", {"role": "host"})
        assert status == 201
        status, body = await join(http, base, "a", {"role": "host"})
        assert (status, body["error"]) == (409, "host_taken")
        assert (await join(http, base, "a"))[0] == 201
        status, body = await join(http, base, "a")
        assert (status, body["error"]) == (409, "room_full")
        assert (await join(http, base, "b"))[0] == 201  # rooms are separate

        async with http.get(f"{base}/poll") as response:
            assert response.status == 404
        # the participant id is public: it opens nothing
        wrong = {"Authorization": f"Bearer {host['participant_id']}"}
        async with http.get(f"{base}/poll", headers=wrong) as response:
            assert response.status == 404
        bearer = {"Authorization": f"Bearer {host['token']}"}
        async with http.get(f"{base}/poll?after=x", headers=bearer) as r:
            assert r.status == 400
        client = PollClient(http, base, host["token"])
        try:
            await client.send_text({"type": "dance"})
            async with http.post(
                f"{base}/send", data="not json", headers=bearer
            ) as response:
                assert response.status == 204
            await eventually(
                lambda: (
                    client.saw("error", code="unknown_type")
                    and client.saw("error", code="bad_json")
                ),
                what="error messages",
            )
        finally:
            await client.close()


async def test_a_client_that_stops_polling_leaves(http: aiohttp.ClientSession) -> None:
    # the idle timeout is also how long an ended session answers 410 before it
    # is forgotten: 5 s leaves a busy machine time to see that window
    async with poll_server("--room=demo", "--idle-timeout=5") as base:
        _, host = await join(http, base, "demo", {"role": "host"})
        _, guest = await join(http, base, "demo")  # and never polls
        host_client = PollClient(http, base, host["token"])
        try:
            await eventually(
                lambda: host_client.saw(
                    "participant-left", participant_id=guest["participant_id"]
                ),
                what="the silent guest is removed",
            )
            assert host_client.final_status is None  # the polling host stays

            async def guest_poll_status() -> int:
                headers = {"Authorization": f"Bearer {guest['token']}"}
                async with http.get(
                    f"{base}/poll", params={"after": 1000}, headers=headers
                ) as response:
                    return response.status

            assert await guest_poll_status() == 410  # over, nothing left to fetch
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LIVENESS
            while (status := await guest_poll_status()) == 410:
                assert loop.time() < deadline, "the ended session was never forgotten"
                await asyncio.sleep(0.25)
            assert status == 404  # an idle timeout later: forgotten
            assert (await join(http, base, "demo"))[0] == 201  # its seat is free
        finally:
            await host_client.close()
