"""pysfu's media path with an independent WebRTC stack: GStreamer's webrtcbin.

``examples/whip_sfu.py`` runs as a real process; the GStreamer clients in
``tests/gst/`` run with Debian's ``/usr/bin/python3`` as subprocesses
(``tests/gst_clients.py``) and report what they decode. Missing packages
make these tests fail, not skip: ``scripts/test`` installs them
(gstreamer1.0-plugins-{base,good,bad}, gstreamer1.0-nice, gstreamer1.0-tools,
python3-gi, gir1.2-gst-plugins-bad-1.0).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pysfu.signalling import Answer, Offer

from ..example_server import RunningExample
from ..gst_clients import (
    COLOR,
    DETAILED,
    LIVENESS,
    TONE,
    GstClient,
    GstStarter,
    close_to,
    decoded,
    gst_clients,
    publish,
    shows_smpte,
    wait_for,
)
from ..helpers import eventually
from ..peers import Peer, PeerFactory
from ..whip_client import whip_server
from ..ws_client import WsClient, create_room, join

pytestmark = pytest.mark.gstreamer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningExample]:
    """examples/whip_sfu.py on 127.0.0.1 (WHIP, WHEP and the WebSocket room)."""
    options = ("--slug=ascii", "--max-participants=2", "--log-level=INFO")
    async with whip_server(*options, log=tmp_path / "whip_sfu.log") as base:
        yield base


@pytest.fixture
def gst(tmp_path: Path) -> Iterator[GstStarter]:
    """Start GStreamer clients; every one is stopped when the test ends."""
    with gst_clients(tmp_path) as start:
        yield start


async def credential(http: aiohttp.ClientSession, base: str, slug: str) -> Any:
    """A participant's join grant for the room ``slug``."""
    status, grant = await join(http, f"{base}/r/{slug}")
    assert status == 200, grant
    return grant


@pytest.mark.parametrize(
    ("publisher_options", "player_options"),
    [
        ((), ()),
        (("--nack", "--fec"), ("--nack",)),
        (("--codec=vp9",), ("--codec=vp9",)),
    ],
    ids=["vp8", "with-rtx-red-ulpfec", "vp9"],
)
async def test_gstreamer_publisher_to_gstreamer_player(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    publisher_options: tuple[str, ...],
    player_options: tuple[str, ...],
) -> None:
    """webrtcbin to webrtcbin through pysfu: VP8; VP8 with the RTX, RED and
    ULPFEC sections webrtcbin offers when asked (pysfu answers VP8 and RTX);
    VP9, which pysfu forwards although aiortc has no codec for it."""
    publisher = publish(gst, server, "gst-room", *publisher_options)
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    answer = publisher.last("answer")
    assert answer is not None and answer["status"] == 201
    assert "a=setup:passive" in answer["sdp"]  # pysfu is the DTLS server

    grant = await credential(http, server, "gst-room")
    player = gst(
        "whep_play.py",
        f"{server}/whep/gst-room",
        grant["ice"]["password"],
        *player_options,
    )
    await wait_for(player, decoded(player, COLOR, TONE), "the publisher's colour")

    # Each leaves with DELETE (on SIGTERM); the host's leaving closes the room.
    player.stop()
    assert player.has("deleted", status=200), player.describe()
    publisher.stop()
    assert publisher.has("deleted", status=200), publisher.describe()
    status, body = await join(http, f"{server}/r/gst-room")
    assert (status, body["error"]) == (404, "room_not_found")


@pytest.mark.parametrize("codec", ["vp8", "vp9"])
async def test_a_detailed_720p_picture_in_1400_byte_packets_is_forwarded_whole(
    tmp_path: Path,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    peers: PeerFactory,
    codec: str,
) -> None:
    """webrtcbin at its payloader's default MTU sends 1400-byte packets for
    any picture with detail; pysfu forwards them all (it once dropped every
    packet over 1356 bytes, silently: nobody saw a frame). A GStreamer player
    decodes the moving colour bars, and for VP8 an aiortc viewer in the
    WebSocket room too (aiortc cannot decode VP9); nothing is dropped for size."""
    log = tmp_path / "whip_sfu.log"
    options = ("--slug=ascii", "--max-participants=3", "--log-level=INFO")
    async with whip_server(*options, log=log) as server:
        publisher = publish(gst, server, "big", f"--codec={codec}", *DETAILED)
        await wait_for(
            publisher, lambda: publisher.has("connection", state="connected"), "up"
        )
        grant = await credential(http, server, "big")
        player = gst(
            "whep_play.py",
            f"{server}/whep/big",
            grant["ice"]["password"],
            f"--codec={codec}",
        )
        rows: list[Any] = []

        def player_sees_the_bars_move() -> bool:
            stats = player.last("stats")
            if stats is None or stats["video"]["frames"] < 10:
                return False
            video = stats["video"]
            assert (video["width"], video["height"]) == (1280, 720)
            if shows_smpte(video["row"]) and video["row"] not in rows:
                rows.append(video["row"])
            return len(rows) >= 2  # whole pictures, and they move

        await wait_for(player, player_sees_the_bars_move, "the player sees the bars")
        await wait_for(player, decoded(player, None, TONE), "the player's audio")

        if codec == "vp8":
            viewer_grant = await credential(http, server, "big")
            viewer = peers(
                viewer_grant["participant_id"],
                2,
                publish_video=False,
                publish_audio=False,
            )
            viewer.attach(await WsClient.connect(http, viewer_grant))
            seen: list[Any] = []

            def viewer_sees_the_bars_move() -> bool:
                for track in viewer.received.values():
                    if track.kind == "video" and track.size is not None:
                        assert track.size == (1280, 720)
                        if shows_smpte(track.row) and track.row not in seen:
                            seen.append(track.row)
                return len(seen) >= 2

            await wait_for(
                publisher, viewer_sees_the_bars_move, "the aiortc viewer sees the bars"
            )
    assert "cannot be forwarded" not in log.read_text()  # nothing too large


async def test_a_vanished_gstreamer_publisher_is_dropped(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
) -> None:
    """libnice answers pysfu's ICE consent checks, so a session lives on; a
    publisher killed without a DELETE stops answering and is dropped."""
    publisher = publish(gst, server, "gst-gone")
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    grant = await credential(http, server, "gst-gone")
    player = gst("whep_play.py", f"{server}/whep/gst-gone", grant["ice"]["password"])
    await wait_for(player, decoded(player, COLOR, TONE), "the publisher's colour")

    def frames() -> int:
        stats = player.last("stats")
        return int(stats["video"]["frames"]) if stats else 0

    # 360 more frames: 12 s at 30 fps, longer than the consent window (10 s)
    start = frames()
    await wait_for(player, lambda: frames() >= start + 360, "a long session")

    publisher.kill()

    async def room_status() -> int:
        return (await join(http, f"{server}/r/gst-gone"))[0]

    for _ in range(int(LIVENESS)):
        if await room_status() == 404:
            break
        await asyncio.sleep(1)
    assert await room_status() == 404  # the host is gone, and with it the room

    # and nothing reaches the player any more: its picture freezes
    reports = len(player.of("stats"))
    stopped_at = frames()
    await wait_for(player, lambda: len(player.of("stats")) >= reports + 3, "stats")
    assert frames() == stopped_at


async def test_gstreamer_publisher_to_websocket_participant(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    peers: PeerFactory,
) -> None:
    publisher = publish(gst, server, "gst-ws")
    await wait_for(
        publisher, lambda: publisher.has("connection", state="connected"), "publish"
    )
    grant = await credential(http, server, "gst-ws")
    viewer = peers(grant["participant_id"], 2, publish_video=False, publish_audio=False)
    viewer.attach(await WsClient.connect(http, grant))

    def sees_publisher() -> bool:
        tracks = [t for t in viewer.received.values() if t.kind == "video"]
        return any(close_to(t.color, COLOR) and t.other_frames >= 30 for t in tracks)

    await wait_for(publisher, sees_publisher, "the WebSocket viewer sees the colour")
    audio = next(t for t in viewer.received.values() if t.kind == "audio")
    await eventually(lambda: audio.frames >= 50, LIVENESS, "audio frames")
    assert abs(audio.frequency() - TONE) <= TONE * 0.05


async def test_websocket_publisher_to_gstreamer_player(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    peers: PeerFactory,
) -> None:
    _, room = await create_room(http, server)
    slug = room["join_url"].rsplit("/", 1)[1]
    _, grant = await join(http, room["join_url"], role="host")
    host: Peer = peers(grant["participant_id"], 5, tone=880.0)
    host.attach(await WsClient.connect(http, grant))
    viewer_grant = await credential(http, server, slug)
    player = gst(
        "whep_play.py", f"{server}/whep/{slug}", viewer_grant["ice"]["password"]
    )
    await wait_for(player, decoded(player, None, 880.0), "the host's video and tone")


async def relay(member: GstClient, client: WsClient) -> None:
    """Carry the server's offers to room_member.py and its answers back."""
    answered = 0

    async def answers() -> None:
        nonlocal answered
        while True:
            found = member.of("answer")
            for event in found[answered:]:
                await client.send(Answer(sdp=event["sdp"]))
            answered = len(found)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(answers())
    try:
        while True:
            message = await client.inbox.get()
            if isinstance(message, Offer):
                member.send({"type": "offer", "sdp": message.sdp})
    finally:
        task.cancel()


async def test_gstreamer_member_of_a_websocket_room(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    peers: PeerFactory,
) -> None:
    """webrtcbin answers pysfu's offers, renegotiations included: it joins an
    empty room, and the host who comes later reaches it in a new offer."""
    _, room = await create_room(http, server)
    _, grant = await join(http, room["join_url"])
    member = gst("room_member.py")
    ws = await WsClient.connect(http, grant)
    relaying = asyncio.create_task(relay(member, ws))
    try:
        await wait_for(member, lambda: member.of("answer"), "the first answer")
        _, host_grant = await join(http, room["join_url"], role="host")
        host: Peer = peers(host_grant["participant_id"], 6, tone=880.0)
        host.attach(await WsClient.connect(http, host_grant))
        await wait_for(member, decoded(member, None, 880.0), "the host's media")
        assert len(member.of("answer")) >= 2  # the host's tracks came in a new offer
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await ws.close()


async def test_a_late_joining_gstreamer_member_publishes_and_receives(
    server: RunningExample,
    http: aiohttp.ClientSession,
    gst: GstStarter,
    peers: PeerFactory,
) -> None:
    """webrtcbin with its sources linked before the first offer (the natural
    way) joins a room whose host already publishes: its first offer lists the
    host's tracks as well as the member's own publish slots. webrtcbin sends
    on the first section of each kind, so those must be the publish slots;
    the member then both receives the host and publishes its colour."""
    _, room = await create_room(http, server)
    _, host_grant = await join(http, room["join_url"], role="host")
    host: Peer = peers(host_grant["participant_id"], 6, tone=880.0)
    host.attach(await WsClient.connect(http, host_grant))
    # the host publishes once the server reports on its packets (RTCP RR)
    for _ in range(int(LIVENESS * 4)):
        stats = await host.pc.getStats()
        if any(s.type == "remote-inbound-rtp" for s in stats.values()):
            break
        await asyncio.sleep(0.25)
    _, grant = await join(http, room["join_url"])
    color = "".join(f"{c:02x}" for c in COLOR)
    member = gst("room_member.py", "--publish", f"--color={color}", f"--tone={TONE}")
    ws = await WsClient.connect(http, grant)
    relaying = asyncio.create_task(relay(member, ws))
    try:
        await wait_for(member, decoded(member, None, 880.0), "the host's media")
        first_offer = member.of("offer")[0]["sdp"]
        assert "a=sendonly" in first_offer  # the host's tracks, in the first offer

        def host_sees_the_member() -> bool:
            tracks = [t for t in host.received.values() if t.kind == "video"]
            return any(
                close_to(t.color, COLOR) and t.other_frames >= 30 for t in tracks
            )

        await wait_for(member, host_sees_the_member, "the host sees the member")
        audio = next(t for t in host.received.values() if t.kind == "audio")
        await eventually(lambda: audio.frames >= 50, LIVENESS, "the member's audio")
        assert abs(audio.frequency() - TONE) <= TONE * 0.05
        assert not [m for m in ws.raw if m["type"] == "error"]
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await ws.close()
