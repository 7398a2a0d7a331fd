"""examples/ws_sfu.py as a user's client meets it: HTTP join backend, WebSocket,
ICE credentials as the join capability. Real server process, aiortc clients."""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..example_server import HOST_KEY, example_server
from ..helpers import (
    LIVENESS,
    child_pids,
    eventually,
    process_alive,
    udp_port_owner,
)
from ..peers import Peer, PeerFactory
from ..ws_client import WsClient, create_room, join

#: The example with its rooms in this process, and spread over two workers.
EITHER_MODE = pytest.mark.parametrize(
    "mode", [(), ("--workers=2",)], ids=["in-process", "workers"]
)


async def connect(
    http: aiohttp.ClientSession, peer: Peer, grant: dict, password: str | None = None
) -> WsClient:
    ws = await http.ws_connect(grant["ws_url"])
    client = WsClient(ws, password or grant["ice"]["password"])
    await client.hello(grant["signalling_token"])
    peer.attach(client)
    return client


@dataclass
class Session:
    """One user of the example: join answer, aiortc peer, signalling socket."""

    grant: dict[str, Any]
    peer: Peer
    ws: WsClient


async def host_and_guest(
    http: aiohttp.ClientSession, base: str, peers: PeerFactory
) -> tuple[dict[str, Any], Session, Session]:
    """Create a room; a host and a guest join it and connect their peers."""
    _, room = await create_room(http, base)
    sessions = []
    for role, code in (("host", 1), ("participant", 2)):
        _, grant = await join(http, room["join_url"], role=role)
        peer = peers(grant["participant_id"], code)
        sessions.append(Session(grant, peer, await connect(http, peer, grant)))
    return room, sessions[0], sessions[1]


async def test_room_creation_needs_a_host_key(http: aiohttp.ClientSession) -> None:
    async with example_server() as base:
        assert (await create_room(http, base, key="wrong"))[0] == 401
        async with http.post(f"{base}/api/rooms") as response:
            assert response.status == 401
            assert (await response.json())["error"] == "unauthorized"
        status, room = await create_room(http, base)
        assert status == 201
        assert room["join_url"].startswith(base + "/r/%F0%9F")  # emoji, percent-encoded
        # a single-use ticket in the fragment, not the host key
        assert room["host_url"].startswith(room["join_url"] + "?role=host#ticket=")
        assert HOST_KEY not in room["host_url"]
        async with http.get(room["join_url"]) as page:
            assert page.status == 200


@EITHER_MODE
async def test_join_rules(http: aiohttp.ClientSession, mode: tuple[str, ...]) -> None:
    async with example_server(*mode) as base:
        _, room = await create_room(http, base)
        status, body = await join(http, base + "/r/nope")
        assert (status, body["error"]) == (404, "room_not_found")
        status, grant = await join(http, room["join_url"], name="alice")
        assert status == 200
        assert set(grant) >= {"participant_id", "ice", "ice_servers", "ws_url"}
        assert len(grant["ice"]["password"]) >= 22
        status, body = await join(http, room["join_url"])
        assert (status, body["error"]) == (409, "room_full")
        api = room["join_url"].replace("/r/", "/api/rooms/") + "/join"
        async with http.post(api, json={"role": "host"}) as response:
            assert (response.status, (await response.json())["error"]) == (
                401,
                "unauthorized",
            )
        assert (await join(http, room["join_url"], role="host"))[0] == 200
        status, body = await join(http, room["join_url"], role="host")
        assert (status, body["error"]) == (409, "host_taken")
        async with http.post(api, data="{") as response:
            assert response.status == 400


async def test_host_and_participant_over_websocket(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with example_server() as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host", name="Hana")
        _, guest_grant = await join(http, room["join_url"], name="Gus")
        host, guest = (
            peers(host_grant["participant_id"], 1),
            peers(guest_grant["participant_id"], 2),
        )
        host_ws = await connect(http, host, host_grant)
        guest_ws = await connect(http, guest, guest_grant)
        await guest.wait_video_from(host)
        await host.wait_video_from(guest)
        await host.wait_audio_from(guest)
        offers = [m["sdp"] for m in host_ws.raw if m["type"] == "offer"]
        assert offers and all("a=ice-pwd:REDACTED" in sdp for sdp in offers)
        assert not any(host_grant["ice"]["password"] in sdp for sdp in offers)
        assert f"a=ice-ufrag:{host_grant['ice']['username_fragment']}" in offers[0]
        joined = [m for m in host_ws.raw if m["type"] == "participant-joined"]
        assert [m["name"] for m in joined] == ["Gus"]
        # the guest leaves: the host is told, and the seat is free again
        await guest_ws.ws.send_str('{"type": "leave"}')
        await eventually(
            lambda: any(m["type"] == "participant-left" for m in host_ws.raw),
            what="participant-left",
        )
        assert (await join(http, room["join_url"]))[0] == 200


@EITHER_MODE
async def test_credentials_are_single_use(
    http: aiohttp.ClientSession, peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    async with example_server(*mode) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, guest_grant = await join(http, room["join_url"])
        host, guest = (
            peers(host_grant["participant_id"], 1),
            peers(guest_grant["participant_id"], 2),
        )
        await connect(http, host, host_grant)
        await connect(http, guest, guest_grant)
        track = await guest.wait_video_from(host)
        replay = await http.ws_connect(guest_grant["ws_url"])
        await replay.send_json(
            {"type": "hello", "token": guest_grant["signalling_token"]}
        )
        message = await replay.receive_json(timeout=LIVENESS)
        assert (message["type"], message["code"]) == ("error", "credential_used")
        await replay.receive(timeout=LIVENESS)
        assert replay.close_code == 4401
        before = len(track.patterns)
        await eventually(
            lambda: len(track.patterns) > before + 30, what="media goes on"
        )


@EITHER_MODE
async def test_expired_credentials_are_refused_and_free_the_seat(
    http: aiohttp.ClientSession, mode: tuple[str, ...]
) -> None:
    ttl = 5.0  # the seat check below runs within it, on a busy machine too
    async with example_server(f"--credential-ttl={ttl}", *mode) as base:
        _, room = await create_room(http, base)
        _, grant = await join(http, room["join_url"])
        granted_by = asyncio.get_running_loop().time()  # the server's clock too
        assert (await join(http, room["join_url"]))[0] == 409  # seat reserved
        await asyncio.sleep(granted_by + ttl + 0.1 - asyncio.get_running_loop().time())
        late = await http.ws_connect(grant["ws_url"])
        await late.send_json({"type": "hello", "token": grant["signalling_token"]})
        message = await late.receive_json(timeout=LIVENESS)
        assert (message["type"], message["code"]) == ("error", "credential_expired")
        await late.close()
        assert (await join(http, room["join_url"]))[0] == 200  # seat freed


@EITHER_MODE
async def test_another_participants_password_never_connects(
    http: aiohttp.ClientSession, peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    # the host must connect within the TTL, mallory is removed after it
    options = ("--max-participants=2", "--credential-ttl=10", *mode)
    async with example_server(*options) as base:
        _, room = await create_room(http, base)
        _, host_grant = await join(http, room["join_url"], role="host")
        _, mallory_grant = await join(http, room["join_url"], name="mallory")
        _, victim_grant = await join(http, room["join_url"], name="victim")
        host = peers(host_grant["participant_id"], 1)
        mallory = peers(mallory_grant["participant_id"], 2)
        host_ws = await connect(http, host, host_grant)
        # mallory uses her own session but the victim's ICE password
        await connect(
            http, mallory, mallory_grant, password=victim_grant["ice"]["password"]
        )
        await eventually(lambda: mallory.answers_sent >= 1, what="mallory answered")
        # her credentials expire without ICE completing: she is removed
        await eventually(
            lambda: any(
                m["type"] == "participant-left"
                and m["participant_id"] == mallory_grant["participant_id"]
                for m in host_ws.raw
            ),
            what="mallory removed",
        )
        assert mallory.pc.connectionState != "connected"
        assert all(t.frames == 0 for t in mallory.received.values())
        assert re.fullmatch(r"p-[\w-]+", mallory_grant["participant_id"])


async def test_urls_follow_the_scheme_of_a_tls_proxy(
    http: aiohttp.ClientSession,
) -> None:
    async with example_server() as base:
        async with http.post(
            f"{base}/api/rooms",
            headers={
                "Authorization": f"Bearer {HOST_KEY}",
                "X-Forwarded-Proto": "https",
            },
        ) as response:
            room = await response.json()
        assert room["join_url"].startswith("https://")
        status, grant = await join(
            http, room["join_url"].replace("https://", "http://", 1)
        )
        assert status == 200 and grant["ws_url"].startswith("ws://")  # no proxy here
        api = (
            room["join_url"]
            .replace("https://", "http://", 1)
            .replace("/r/", "/api/rooms/")
        )
        async with http.post(
            api + "/join",
            json={"role": "host"},
            headers={
                "Authorization": f"Bearer {HOST_KEY}",
                "X-Forwarded-Proto": "https",
            },
        ) as response:
            assert (await response.json())["ws_url"].startswith("wss://")


@EITHER_MODE
async def test_sigterm_tells_everyone_and_exits_cleanly(
    http: aiohttp.ClientSession, peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    async with example_server(*mode) as base:
        _, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        host_ws = host_session.ws
        guest_ws = guest_session.ws
        await guest.wait_video_from(host)
        workers = child_pids(base.process.pid)
        assert len(workers) == (2 if mode else 0)
        base.process.send_signal(signal.SIGTERM)
        for client in (host_ws, guest_ws):
            await asyncio.wait_for(client.closed.wait(), LIVENESS)
            closing = [m for m in client.raw if m["type"] == "room-closed"]
            assert [m["reason"] for m in closing] == ["server shutting down"]
        returncode = await asyncio.to_thread(base.process.wait, LIVENESS)
        assert returncode == 0
        await eventually(
            lambda: not any(process_alive(pid) for pid in workers),
            what="no worker outlives the server",
        )


async def test_websocket_origin_is_checked(http: aiohttp.ClientSession) -> None:
    async with example_server("--allowed-origin=https://meet.example.org") as base:
        _, room = await create_room(http, base)
        _, grant = await join(http, room["join_url"])
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(grant["ws_url"], origin="https://evil.example.com")
        assert refused.value.status == 403
        ws = await http.ws_connect(grant["ws_url"], origin="https://meet.example.org")
        await ws.send_json({"type": "hello", "token": grant["signalling_token"]})
        assert (await ws.receive_json(timeout=LIVENESS))["type"] == "session"
        await ws.close()
    async with example_server() as base:  # default: the server's own origin only
        _, room = await create_room(http, base)
        _, grant = await join(http, room["join_url"])
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(grant["ws_url"], origin="https://evil.example.com")
        ws = await http.ws_connect(grant["ws_url"], origin=base)
        await ws.send_json({"type": "hello", "token": grant["signalling_token"]})
        assert (await ws.receive_json(timeout=LIVENESS))["type"] == "session"
        await ws.close()


@EITHER_MODE
async def test_prometheus_metrics(
    http: aiohttp.ClientSession, peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def scrape(base: str) -> dict[str, float]:
        headers = {"Authorization": "Bearer metrics-secret"}
        async with http.get(f"{base}/metrics", headers=headers) as response:
            assert response.status == 200
            text = await response.text()
        return {
            sample.name
            + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async with example_server("--metrics-token=metrics-secret", *mode) as base:
        _, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        guest_ws = guest_session.ws
        await guest.wait_video_from(host, frames=30)
        metrics = await scrape(base)
        assert (metrics["pysfu_rooms"], metrics["pysfu_participants"]) == (1, 2)
        assert metrics["pysfu_published_tracks[video]"] == 2
        assert metrics["pysfu_packets_forwarded_total[video]"] >= 30
        forwarded = metrics["pysfu_packets_forwarded_total[video]"]
        await guest_ws.ws.send_str('{"type": "leave"}')
        await eventually(lambda: guest_ws.closed.is_set(), what="guest gone")
        metrics = await scrape(base)
        assert metrics["pysfu_participants"] == 1
        assert metrics["pysfu_participants_left_total"] == 1
        # counters keep what the guest received after it left
        assert metrics["pysfu_packets_forwarded_total[video]"] >= forwarded


async def test_logs_tell_who_but_never_secrets(
    http: aiohttp.ClientSession, peers: PeerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with example_server("--log-level=DEBUG", log=log) as base:
        room, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        host_grant = host_session.grant
        guest_grant = guest_session.grant
        await guest.wait_video_from(host)
    text = log.read_text(errors="replace")
    assert "setLocalDescription" in text  # aiortc did log its SDP at DEBUG...
    for grant in (host_grant, guest_grant):
        assert grant["ice"]["password"] not in text  # ...without the passwords
        assert grant["signalling_token"] not in text
        assert grant["participant_id"] in text  # who did what is there
    assert HOST_KEY not in text
    assert room["room"] in text


@EITHER_MODE
async def test_a_dropped_websocket_can_resume_while_media_flows(
    http: aiohttp.ClientSession, peers: PeerFactory, mode: tuple[str, ...]
) -> None:
    async with example_server("--reconnect-grace=20", *mode) as base:
        _, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        guest_grant = guest_session.grant
        host_ws = host_session.ws
        guest_ws = guest_session.ws
        track = await host.wait_video_from(guest)
        assert guest_ws.resume_token
        await guest_ws.ws.close()  # the signalling drops, the peer connection lives
        before = len(track.patterns)
        await eventually(
            lambda: len(track.patterns) > before + 30, what="media goes on"
        )
        replay = await http.ws_connect(guest_grant["ws_url"])
        await replay.send_json({"type": "resume", "token": "wrong"})
        assert (await replay.receive_json(timeout=LIVENESS))[
            "code"
        ] == "credential_invalid"
        await replay.close()
        used = guest_ws.resume_token
        await guest_ws.reconnect(http, guest_grant["ws_url"])
        await eventually(
            lambda: guest_ws.resume_token != used, what="a new resume token"
        )
        await guest_ws.ws.send_str('{"type": "leave"}')  # the new socket works
        await eventually(
            lambda: any(m["type"] == "participant-left" for m in host_ws.raw),
            what="participant-left after the resumed session's leave",
        )


async def test_a_websocket_that_does_not_come_back_leaves(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    # no guests' grace: the seat is free once the session ends (with one, it
    # is kept for the guest's seat_rejoin, see test_guest_grace.py)
    async with example_server("--reconnect-grace=1", "--guest-grace=0") as base:
        room, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        host_ws = host_session.ws
        guest_ws = guest_session.ws
        await host.wait_video_from(guest)
        await guest_ws.ws.close()
        await eventually(
            lambda: any(m["type"] == "participant-left" for m in host_ws.raw),
            what="removal after the grace period",
        )
        assert (await join(http, room["join_url"]))[0] == 200  # the seat is free


def server_port(offer_sdp: str) -> int:
    """The port of the server's (only, loopback) ICE candidate in an offer."""
    found = re.search(
        r"a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 (\d+) typ host", offer_sdp, re.I
    )
    assert found, offer_sdp
    return int(found.group(1))


async def test_rooms_spread_over_worker_processes(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with example_server("--workers=2") as base:
        workers = child_pids(base.process.pid)
        assert len(workers) == 2
        rooms = [await host_and_guest(http, base, peers) for _ in range(2)]
        holders = set()
        for room, host, guest in rooms:
            await guest.peer.wait_video_from(host.peer)
            await host.peer.wait_video_from(guest.peer)
            assert set(host.peer.received) == {
                f"{guest.grant['participant_id']}/video",
                f"{guest.grant['participant_id']}/audio",
            }  # nothing from the other room
            # both connections of a room end in the same worker's UDP sockets
            offers = [
                next(m["sdp"] for m in s.ws.raw if m["type"] == "offer")
                for s in (host, guest)
            ]
            owners = {udp_port_owner(server_port(sdp), workers) for sdp in offers}
            assert len(owners) == 1 and owners <= set(workers)
            holders |= owners
            # who speaks crosses the worker pipe too (it once was dropped there)
            for session in (host, guest):
                await eventually(
                    lambda s=session: any(  # type: ignore[misc]
                        m["type"] == "speaking" and m["active"] for m in s.ws.raw
                    ),
                    what="a 'speaking' message from a worker",
                )
            status, body = await join(http, room["join_url"])
            assert (status, body["error"]) == (409, "room_full")
        assert holders == set(workers)  # one room in each worker
        base.process.terminate()
        assert await asyncio.to_thread(base.process.wait, LIVENESS) == 0
        await eventually(
            lambda: not any(process_alive(pid) for pid in workers),
            what="no worker outlives the server",
        )


@EITHER_MODE
async def test_a_resumed_session_gets_the_pending_offer_again(
    http: aiohttp.ClientSession, mode: tuple[str, ...]
) -> None:
    async with example_server(*mode) as base:
        _, room = await create_room(http, base)
        _, grant = await join(http, room["join_url"], role="host")
        ws = await WsClient.connect(http, grant)
        await eventually(
            lambda: any(m["type"] == "offer" for m in ws.raw), what="first offer"
        )
        first = next(m["sdp"] for m in ws.raw if m["type"] == "offer")
        await ws.close()  # lost before it was answered
        await ws.reconnect(http, grant["ws_url"])
        await eventually(
            lambda: sum(m["type"] == "offer" for m in ws.raw) == 2,
            what="the offer sent again",
        )
        again = [m["sdp"] for m in ws.raw if m["type"] == "offer"][1]
        assert again == first and "a=ice-pwd:REDACTED" in again
        await ws.close()


async def test_a_resume_takes_over_a_live_socket_and_ice_restarts_over_it(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    """A client whose network changed opens a new socket while the server
    still holds the old one (its TCP connection silently dead): the resume
    takes the session over, and an ICE restart asked for on it gets an
    offer with the server's fresh password in clear (only the join grant's
    is redacted)."""
    async with example_server("--reconnect-grace=20") as base:
        _, host_session, guest_session = await host_and_guest(http, base, peers)
        host = host_session.peer
        guest = guest_session.peer
        guest_ws = guest_session.ws
        await guest.wait_video_from(host)
        old_socket = guest_ws.ws
        used = guest_ws.resume_token
        offers = len(guest_ws.raw)
        await guest_ws.reconnect(http, guest_session.grant["ws_url"])  # old kept open
        await eventually(lambda: guest_ws.resume_token != used, what="a new token")
        # the server closed the old socket (after what it had queued on it)
        closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        while (await old_socket.receive(timeout=LIVENESS)).type not in closing:
            pass
        await guest_ws.ws.send_str('{"type": "restart_ice"}')
        await eventually(lambda: guest.ice_restarts == 1, what="a restart offer")
        restart_offer = [m for m in guest_ws.raw[offers:] if m["type"] == "offer"][-1]
        assert "a=ice-pwd:REDACTED" not in restart_offer["sdp"]
        assert guest_session.grant["ice"]["password"] not in restart_offer["sdp"]
        track = guest.track_from(host.name, "video")
        assert track is not None
        before = sum(1 for c, _ in track.patterns if c == host.code)
        await guest.wait_video_from(host, frames=before + 30)
