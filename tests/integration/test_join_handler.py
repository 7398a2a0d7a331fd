"""pysfu.signalling.join: the ready-made aiohttp join endpoint, served on
127.0.0.1 and asked as a browser would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pysfu import SFU, IceConfig, IceServer, SFUConfig
from pysfu.admission import Admission
from pysfu.signalling.join import browser_client_path, join_handler

LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))
STUN = IceServer("stun:stun.example.org:3478")
TURN = IceServer("turn:turn.example.org:3478", username="u", credential="c")


@pytest.fixture
async def base() -> AsyncIterator[str]:
    """An app with a room "r" for one host and one participant; a host is
    authorized by the bearer key "letmein"."""
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    sfu.create_room("r", max_participants=1)
    app = web.Application()
    app.router.add_post(
        "/api/rooms/{room}/join",
        join_handler(
            Admission(sfu),
            ws_path="/signalling/{participant_id}",
            ice_servers=(STUN, TURN),
            authorize_host=lambda request: (
                request.headers.get("Authorization") == "Bearer letmein"
            ),
        ),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await sfu.close()


async def post(url: str, body: object = None, **kwargs: object) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.json()


async def test_a_participant_gets_the_answer_the_browser_client_reads(
    base: str,
) -> None:
    status, answer = await post(f"{base}/api/rooms/r/join", {"name": "Ada"})
    assert status == 200
    assert answer["room"] == "r" and answer["role"] == "participant"
    assert answer["name"] == "Ada"
    assert len(answer["ice"]["password"]) >= 22  # RFC 8445: 128 bits at least
    assert answer["ice"]["expires_in"] == 30.0
    assert answer["signalling_token"] not in answer["ws_url"]
    host = base.removeprefix("http://")
    assert answer["ws_url"] == f"ws://{host}/signalling/{answer['participant_id']}"
    assert answer["ice_servers"] == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"},
    ]
    # the one participant seat is taken now
    status, refusal = await post(f"{base}/api/rooms/r/join")
    assert (status, refusal["error"]) == (409, "room_full")
    assert refusal["message"]


async def test_a_host_needs_authorization(base: str) -> None:
    status, refusal = await post(f"{base}/api/rooms/r/join", {"role": "host"})
    assert (status, refusal["error"]) == (401, "unauthorized")
    wrong = {"Authorization": "Bearer nope"}
    status, refusal = await post(
        f"{base}/api/rooms/r/join", {"role": "host"}, headers=wrong
    )
    assert (status, refusal["error"]) == (401, "unauthorized")
    good = {"Authorization": "Bearer letmein"}
    status, answer = await post(
        f"{base}/api/rooms/r/join", {"role": "host"}, headers=good
    )
    assert (status, answer["role"]) == (200, "host")


async def test_bad_requests_get_a_clear_error(base: str) -> None:
    for body in (["a list"], {"role": "admin"}, {"name": 7}):
        status, refusal = await post(f"{base}/api/rooms/r/join", body)
        assert (status, refusal["error"]) == (400, "bad_request"), body
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/rooms/r/join", data=b"{not json") as response,
    ):
        assert response.status == 400
        assert (await response.json())["message"] == "the body is not JSON"
    unknown_charset = {"Content-Type": "application/json; charset=nope"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/rooms/r/join", data=b"{}", headers=unknown_charset
        ) as response,
    ):
        assert response.status == 400  # was a 500: the handler read it raw
        assert (await response.json())["message"] == "the body is not text"
    status, refusal = await post(f"{base}/api/rooms/nowhere/join")
    assert (status, refusal["error"]) == (404, "room_not_found")
    # none of these took the seat
    status, _ = await post(f"{base}/api/rooms/r/join")
    assert status == 200


async def test_behind_a_tls_proxy_the_socket_is_wss(base: str) -> None:
    status, answer = await post(
        f"{base}/api/rooms/r/join", headers={"X-Forwarded-Proto": "https"}
    )
    assert status == 200 and answer["ws_url"].startswith("wss://")


def test_the_browser_client_ships_in_the_package() -> None:
    path = browser_client_path()
    assert "export async function join" in path.read_text()
    assert path.with_name("pysfu-client.d.ts").is_file()
