"""Attack: take a participant's seat knowing only its participant id.

Participant ids are not secrets (they are in URLs, access logs and every
member's ``joined`` message). A client that opens the victim's WebSocket
before the victim must get nothing: the session is bound to the signalling
token that only the join answer carries.
"""

from __future__ import annotations

import aiohttp
import pytest

from ..example_server import example_server
from ..helpers import eventually
from ..peers import PeerFactory
from ..ws_client import join
from .app_helpers import client_from, connect, room_with_host

pytestmark = [pytest.mark.adversarial, pytest.mark.network]


async def test_a_participant_id_alone_does_not_open_the_session(
    peers: PeerFactory,
) -> None:
    async with (
        example_server() as base,
        client_from("127.0.0.1") as http,
        client_from("127.0.0.66") as attacker,
    ):
        room, host = await room_with_host(http, base, peers)
        status, grant = await join(http, room["join_url"])
        assert status == 200
        victim_id = grant["participant_id"]
        # the attacker races to the victim's socket: with no token, a guessed
        # token, and the first message a stale client would send
        for first in (
            None,
            {"type": "hello", "token": victim_id},
            {"type": "hello", "token": ""},
            {"type": "resume", "token": victim_id},
            {"type": "offer", "sdp": "v=0"},
        ):
            ws = await attacker.ws_connect(grant["ws_url"])
            if first is not None:
                await ws.send_json(first)
                message = await ws.receive_json(timeout=30)
                assert message["type"] == "error", message
                code = message["code"]
                assert code == "hello_expected" or code.startswith("credential_")
                assert code != "credential_used"  # nothing was redeemed
            else:  # an empty first message
                await ws.send_str("")
                message = await ws.receive_json(timeout=30)
                assert message["code"] == "hello_expected"
            await ws.close()
        # the victim still takes its seat and sees the host
        victim = await connect(http, peers, grant, 2)
        assert (await victim.peer.wait_video_from(host.peer)).codes() == {1}
        await eventually(
            lambda: any(m["type"] == "participant-joined" for m in host.ws.raw),
            what="the host sees the victim join",
        )
        assert not any(m.get("code") == "credential_used" for m in victim.ws.raw)


async def test_resume_tokens_stay_out_of_urls_and_logs_and_work_once(
    peers: PeerFactory, tmp_path: object
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    log = tmp_path / "server.log"
    async with (
        example_server("--log-level=INFO", "--reconnect-grace=30", log=log) as base,
        aiohttp.ClientSession() as http,
    ):
        room, host = await room_with_host(http, base, peers)
        _, grant = await join(http, room["join_url"])
        guest = await connect(http, peers, grant, 2)
        await guest.peer.wait_video_from(host.peer)
        first_token = guest.ws.resume_token
        assert first_token
        await guest.ws.ws.close()  # the signalling drops; media lives on
        await guest.ws.reconnect(http, grant["ws_url"])
        await eventually(
            lambda: guest.ws.resume_token != first_token, what="a rotated token"
        )
        # the used token is spent: nobody can take the session over with it
        replay = await http.ws_connect(grant["ws_url"])
        await replay.send_json({"type": "resume", "token": first_token})
        message = await replay.receive_json(timeout=30)
        assert message["code"].startswith("credential_")
        await replay.close()
    text = log.read_text(errors="replace")
    assert "GET /ws/" in text  # the access log is there...
    assert first_token not in text and "resume=" not in text  # ...without tokens
    assert str(guest.ws.resume_token) not in text
    assert grant["signalling_token"] not in text
