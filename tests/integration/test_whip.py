"""WHIP and WHEP as clients meet them: examples/whip_sfu.py in a real process,
aiortc clients offering over HTTP, WebSocket-room participants in the same rooms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import aioice.stun
import pytest

from pysfu import _aiortc as rtc
from pysfu.admission import Admission
from pysfu.signalling import Joined, ParticipantLeft
from pysfu.signalling.whip import SDP, WhipEndpoint
from pysfu.slugs import emoji_slug, slug_path
from pysfu.workers import WorkerPool

from ..example_server import HOST_KEY
from ..helpers import LIVENESS, eventually
from ..peers import Peer, PeerFactory
from ..stun_probe import candidate_address, stun_check
from ..whip_client import (
    WhipResponse,
    make_offer,
    post_offer,
    whip_server,
    whip_session,
    without_known_codecs,
)
from ..ws_client import WsClient, create_room, join
from .test_lifecycle import kill_sockets


async def grant_for(
    http: aiohttp.ClientSession, base: str, room: str, role: str = "participant"
) -> dict[str, object]:
    status, grant = await join(http, f"{base}/r/{room}", role=role)
    assert status == 200, grant
    return dict(grant)


def password(grant: dict[str, object]) -> str:
    ice = grant["ice"]
    assert isinstance(ice, dict)
    return str(ice["password"])


async def ws_member(
    http: aiohttp.ClientSession, base: str, room: str, peer: Peer, role: str
) -> WsClient:
    """``peer`` joins ``room`` over the WebSocket protocol."""
    grant = await grant_for(http, base, room, role)
    peer.name = str(grant["participant_id"])
    client = WsClient(await http.ws_connect(str(grant["ws_url"])), password(grant))
    await client.hello(str(grant["signalling_token"]))
    peer.attach(client)
    return client


async def patterns_from(peer: Peer, slot: str, code: int, frames: int = 10) -> None:
    """Wait until ``peer`` decoded ``frames`` frames of ``code`` on a WHEP slot."""
    track = await peer.wait_track("whep", slot)
    await eventually(
        lambda: sum(1 for c, _ in track.patterns if c == code) >= frames,
        what=f"{frames} frames of {code}",
    )


def answer_line(response: WhipResponse, prefix: str) -> set[str]:
    return {
        line[len(prefix) :]
        for line in response.text.splitlines()
        if line.startswith(prefix)
    }


async def test_publish_with_whip_watch_with_whep(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    options = (
        "--stun=stun:stun.example.net:3478",
        "--turn=turn:turn.example.net:3478?transport=udp",
        "--turn-username=alice",
        "--turn-password=s3cret",
        "--max-participants=2",
    )
    async with whip_server(*options) as base:
        publisher = peers("whip", 5, tone=660.0)
        published = await whip_session(http, base, "stage", publisher, HOST_KEY)
        assert published.status == 201, published.text
        assert published.headers["Content-Type"] == "application/sdp"
        location = published.headers["Location"]
        assert location.startswith("/whip/stage/")
        assert published.headers["ETag"]
        # pysfu is the DTLS server, so RSA-certificate clients work
        assert answer_line(published, "a=setup:") == {"passive"}
        assert answer_line(published, "a=ice-lite") == {""}
        assert published.links == [
            '<stun:stun.example.net:3478>; rel="ice-server"',
            '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; '
            'username="alice"; credential="s3cret"; credential-type="password"',
        ]

        # a WHEP viewer with a join credential decodes the publisher's video
        # and hears its tone; the answer's ICE password is the token
        grant = await grant_for(http, base, "stage")
        viewer = peers("whep", 6)
        watched = await whip_session(
            http, base, "stage", viewer, password(grant), watch=True
        )
        assert watched.status == 201, watched.text
        assert watched.headers["Location"].startswith("/whep/stage/")
        assert answer_line(watched, "a=ice-pwd:") == {password(grant)}
        assert answer_line(watched, "a=setup:") == {"passive"}
        await patterns_from(viewer, "video", publisher.code)
        audio = await viewer.wait_track("whep", "audio")
        await eventually(lambda: audio.frames >= 50, what="audio")
        assert abs(audio.frequency() - 660.0) < 20

        # the credential was single-use: the same token again is refused
        again = await whip_session(
            http, base, "stage", peers("again", 7), password(grant), watch=True
        )
        assert again.status == 410
        assert "already used" in again.text


async def test_whip_publisher_and_websocket_room_see_each_other(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with whip_server("--max-participants=2") as base:
        publisher = peers("whip", 5)
        assert (
            await whip_session(http, base, "mixed", publisher, HOST_KEY)
        ).status == 201
        guest = peers("guest", 2)
        await ws_member(http, base, "mixed", guest, "participant")
        # the WHIP host's tracks reach the room participant like any host's,
        # and the guest's reach nobody but the host, who receives nothing
        await eventually(lambda: guest.saw(Joined), what="joined")
        joined = guest.saw(Joined)[0]
        publisher.name = joined.participants[0]["participant_id"]
        assert joined.participants[0]["role"] == "host"
        assert joined.participants[0]["name"] == "WHIP publisher"  # not its id
        await guest.wait_video_from(publisher)
        # a WHEP viewer in the same room watches the host (the host first,
        # though the guest published too)
        grant = await grant_for(http, base, "mixed")
        viewer = peers("whep", 6)
        response = await whip_session(
            http, base, "mixed", viewer, password(grant), watch=True
        )
        assert response.status == 201, response.text
        await patterns_from(viewer, "video", publisher.code)


async def test_delete_leaves_and_the_room_sees_tracks_end(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with whip_server("--max-participants=2") as base:
        # the room exists already with a WebSocket host; a credential publishes
        host = peers("host", 1)
        status, room = await create_room(http, base, slug="ascii")
        assert status == 201
        slug = room["room"]
        await ws_member(http, base, slug, host, "host")
        grant = await grant_for(http, base, slug)
        publisher = peers(str(grant["participant_id"]), 5)
        response = await whip_session(http, base, slug, publisher, password(grant))
        assert response.status == 201, response.text
        assert answer_line(response, "a=ice-pwd:") == {password(grant)}
        track = await host.wait_video_from(publisher)
        resource = base + response.headers["Location"]

        async with http.delete(resource) as unauthenticated:
            assert unauthenticated.status == 401
        headers = {"Authorization": f"Bearer {password(grant)}"}
        async with http.delete(resource, headers=headers) as deleted:
            assert deleted.status == 200
        await asyncio.wait_for(track.ended.wait(), LIVENESS)
        await eventually(
            lambda: any(
                m.participant_id == publisher.name for m in host.saw(ParticipantLeft)
            ),
            what="participant-left",
        )
        async with http.delete(resource, headers=headers) as gone:
            assert gone.status == 404
        # the seat is free again: another participant may join
        assert (await join(http, f"{base}/r/{slug}"))[0] == 200


async def test_refusals_are_specific_and_harm_nothing(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    # long enough for the host to connect and for every refusal below to be
    # tried while the grant is valid, on a busy machine too
    ttl = 10.0
    async with whip_server("--max-participants=1", f"--credential-ttl={ttl}") as base:
        offer = await make_offer(peers("offerer", 5))
        url = f"{base}/whip/refusals"

        async def post(
            body: str = offer,
            token: str | None = HOST_KEY,
            content_type: str = "application/sdp",
            target: str = url,
        ) -> WhipResponse:
            return await post_offer(http, target, body, token, content_type)

        missing = await post(token=None)
        assert missing.status == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert (await post(token="wrong")).status == 401
        assert (await post(target=f"{base}/whip/no%20spaces")).status == 400
        assert (await post(content_type="text/plain")).status == 415
        assert (await post(body="v=0\r\n" + "a=x\r\n" * 20000)).status == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length
            for _ in range(100):
                yield b"a=x" * 1000 + b"\r\n"

        async with http.post(
            url,
            data=chunks(),
            headers={"Authorization": f"Bearer {HOST_KEY}", "Content-Type": SDP},
        ) as chunked:
            assert chunked.status == 413
        garbage = await post(body="this is not SDP")
        assert garbage.status == 400 and "bad offer" in garbage.text
        unknown_codecs = without_known_codecs(offer)
        no_codec = await post(body=unknown_codecs)
        assert no_codec.status == 422 and "no codec" in no_codec.text
        # nothing above created the room
        assert (await join(http, f"{base}/r/refusals"))[0] == 404
        # a publisher's offer does not fit WHEP
        watch = await post(target=f"{base}/whep/refusals")
        assert watch.status == 400 and "receives" in watch.text

        publisher = peers("publisher", 5)
        assert (
            await whip_session(http, base, "refusals", publisher, HOST_KEY)
        ).status == 201
        second_host = await whip_session(
            http, base, "refusals", peers("second", 6), HOST_KEY
        )
        assert second_host.status == 409 and "host" in second_host.text

        grant = await grant_for(http, base, "refusals")
        granted_by = asyncio.get_running_loop().time()  # the server's clock too
        # a bad offer does not spend the credential
        assert (await post(body="nonsense", token=password(grant))).status == 400
        # the room holds one participant: the grant has the seat
        full = await join(http, f"{base}/r/refusals")
        assert full[0] == 409
        watcher = await whip_session(
            http, base, "refusals", peers("watcher", 9), HOST_KEY, watch=True
        )
        assert watcher.status == 409 and "room_full" in watcher.text
        other_room = await whip_session(
            http, base, "elsewhere", peers("x", 7), password(grant), watch=True
        )
        assert other_room.status == 401 and "not for room" in other_room.text
        # the credential expires, the seat is freed
        await asyncio.sleep(granted_by + ttl + 0.1 - asyncio.get_running_loop().time())
        expired = await whip_session(
            http, base, "refusals", peers("late", 8), password(grant), watch=True
        )
        assert expired.status == 410 and "expired" in expired.text
        assert (await join(http, f"{base}/r/refusals"))[0] == 200


async def test_patch_trickles_candidates_and_refuses_bad_restarts(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with whip_server() as base:
        publisher = peers("publisher", 5)
        room = emoji_slug()  # percent-encoded in the URLs
        response = await whip_session(http, base, room, publisher, HOST_KEY)
        assert response.status == 201
        assert response.headers["Location"].startswith(f"/whip/{slug_path(room)}/")
        resource = base + response.headers["Location"]
        etag = response.headers["ETag"]
        offer = publisher.pc.localDescription.sdp
        ufrag = next(
            line for line in offer.splitlines() if line.startswith("a=ice-ufrag:")
        )
        candidate = "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"
        fragment = f"{ufrag}\r\na=mid:0\r\n{candidate}\r\na=end-of-candidates\r\n"

        async def patch(
            body: str,
            if_match: str | None = etag,
            token: str = HOST_KEY,
            content_type: str = "application/trickle-ice-sdpfrag",
        ) -> int:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
            if if_match is not None:
                headers["If-Match"] = if_match
            async with http.patch(resource, data=body, headers=headers) as r:
                return r.status

        assert await patch(fragment) == 204
        assert await patch(fragment, if_match=None) == 204
        assert await patch(fragment, if_match='"stale"') == 412
        assert await patch(fragment, token="wrong") == 401
        assert await patch(fragment, content_type="application/sdp") == 415
        # an ICE restart without the new password is refused (see
        # test_patch_restarts_ice for one with it)
        restart = fragment.replace(ufrag, "a=ice-ufrag:newufrag")
        assert await patch(restart, if_match="*") == 400
        assert await patch(restart) == 400
        bad = "a=mid:0\r\na=candidate:garbage\r\n"
        assert await patch(bad) == 400
        async with http.patch(
            resource + "x",
            data=fragment,
            headers={"Authorization": f"Bearer {HOST_KEY}"},
        ) as unknown:
            assert unknown.status == 404
        # the session is unharmed: the publisher still connects
        await eventually(
            lambda: publisher.pc.connectionState == "connected",
            what="connected",
        )


async def test_patch_restarts_ice(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with whip_server() as base:
        publisher = peers("publisher", 5)
        response = await whip_session(http, base, "restart", publisher, HOST_KEY)
        assert response.status == 201
        resource = base + response.headers["Location"]
        viewer = peers("whep", 6)
        grant = await grant_for(http, base, "restart")
        watched = await whip_session(
            http, base, "restart", viewer, password(grant), watch=True
        )
        assert watched.status == 201
        await patterns_from(viewer, "video", publisher.code)
        old_server = rtc.ice_credentials_in(response.text)
        old_client = rtc.local_ice_credentials(publisher.pc)
        assert old_server is not None and old_client is not None
        server_address = candidate_address(response.text)

        # the publisher's network changed: fresh credentials, sent in a PATCH
        new_client = rtc.restart_ice(publisher.pc)
        fragment = (
            f"a=ice-ufrag:{new_client.username_fragment}\r\n"
            f"a=ice-pwd:{new_client.password}\r\n"
        )
        headers = {
            "Authorization": f"Bearer {HOST_KEY}",
            "Content-Type": "application/trickle-ice-sdpfrag",
            "If-Match": "*",
        }
        async with http.patch(resource, data=fragment, headers=headers) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "application/trickle-ice-sdpfrag"
            assert r.headers["ETag"] != response.headers["ETag"]
            answer = await r.text()
        new_server = rtc.ice_credentials_in(answer)
        assert new_server is not None
        assert new_server.username_fragment != old_server.username_fragment
        assert new_server.password != old_server.password
        assert rtc.follow_remote_ice(publisher.pc, answer)

        # the server takes checks with the new credentials only
        old = await stun_check(
            server_address,
            f"{old_server.username_fragment}:{old_client.username_fragment}",
            old_server.password,
        )
        assert old is None or old.message_class == aioice.stun.Class.ERROR
        new = await stun_check(
            server_address,
            f"{new_server.username_fragment}:{new_client.username_fragment}",
            new_server.password,
        )
        assert new is not None and new.message_class == aioice.stun.Class.RESPONSE
        # and media goes on over the same DTLS transport (aiortc's client
        # could not make a second handshake on it)
        track = await viewer.wait_track("whep", "video")
        before = sum(1 for c, _ in track.patterns if c == publisher.code)
        await patterns_from(viewer, "video", publisher.code, frames=before + 30)
        assert publisher.pc.connectionState == "connected"


async def test_options_and_cors(http: aiohttp.ClientSession) -> None:
    origin = "https://studio.example.org"
    async with whip_server(f"--allowed-origin={origin}") as base:
        preflight = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with http.options(f"{base}/whip/any", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Accept-Post"] == "application/sdp"
            assert response.headers["Access-Control-Allow-Origin"] == origin
            assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
            allowed = response.headers["Access-Control-Allow-Headers"]
            assert {"Authorization", "Content-Type", "If-Match"} <= {
                h.strip() for h in allowed.split(",")
            }
            exposed = response.headers["Access-Control-Expose-Headers"]
            assert {"Location", "ETag", "Link"} <= {
                h.strip() for h in exposed.split(",")
            }
        other = {**preflight, "Origin": "https://evil.example"}
        async with http.options(f"{base}/whep/any", headers=other) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
        # errors carry CORS headers too, so a page can read why
        async with http.post(
            f"{base}/whip/any", headers={"Origin": origin}, data=b""
        ) as response:
            assert response.status == 401
            assert response.headers["Access-Control-Allow-Origin"] == origin


async def test_a_vanished_whep_viewer_frees_its_seat(
    http: aiohttp.ClientSession, peers: PeerFactory
) -> None:
    async with whip_server("--max-participants=1") as base:
        publisher = peers("publisher", 5)
        assert (
            await whip_session(http, base, "vanish", publisher, HOST_KEY)
        ).status == 201
        viewer = peers("viewer", 6)
        response = await whip_session(
            http, base, "vanish", viewer, HOST_KEY, watch=True
        )
        assert response.status == 201, response.text
        await patterns_from(viewer, "video", publisher.code)
        assert (await join(http, f"{base}/r/vanish"))[0] == 409  # full
        kill_sockets(viewer)  # no DELETE, no DTLS goodbye: ICE consent notices
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (await join(http, f"{base}/r/vanish"))[0] != 200:
            assert loop.time() - started < LIVENESS, "the seat was never freed"
            await asyncio.sleep(0.5)
        resource = base + response.headers["Location"]
        headers = {"Authorization": f"Bearer {HOST_KEY}"}
        async with http.delete(resource, headers=headers) as gone:
            assert gone.status == 404


def test_whip_needs_rooms_in_its_own_process() -> None:
    # a WHIP session answers the client's offer where the peer connection is
    pool = WorkerPool(1)  # never started: no process
    with pytest.raises(TypeError, match="in-process SFU"):
        WhipEndpoint(Admission(pool))  # type: ignore[arg-type]
