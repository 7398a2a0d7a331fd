"""Clients written the natural way, from docs/websocket-protocol.md alone.

The project's own test peer (tests/peers.py) attaches its tracks to the
offer's ``recvonly`` sections after reading the offer. A user's first client
more likely adds its transceivers first, as for any WebRTC call, and answers
whatever comes: it must publish and receive all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

import pysfu.participant as participant_module
from pysfu import SFU
from pysfu._aiortc import configure_ice
from pysfu.signalling import Answer, Error, MemorySignalling, Offer

from ..example_server import RunningExample
from ..helpers import eventually
from ..peers import PatternVideoTrack, PeerFactory, ToneAudioTrack, read_pattern
from ..whip_client import whip_server
from ..ws_client import create_room, join

LIVENESS = 60.0


# --8<-- [start:client]
class EarlyTransceiverClient:
    """Adds sendrecv transceivers with its camera and microphone before the
    first offer, then answers each offer as it comes (the protocol doc's
    Negotiation section), filling in its ICE password."""

    def __init__(self, code: int, tone: float) -> None:
        self.code = code
        # Microphone then camera, as a browser's getUserMedia stream lists
        # them, on one transport. aiortc 1.16 loses media with its default
        # (balanced) policy, or when its first transceiver is not bound to
        # the offer's first section: see docs/how-to/clients.md.
        self.pc = RTCPeerConnection(
            RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.addTransceiver(ToneAudioTrack(tone), direction="sendrecv")
        self.pc.addTransceiver(PatternVideoTrack(code), direction="sendrecv")
        #: Codes read from each incoming video track, by track id.
        self.seen: dict[str, set[int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.create_task(self._watch(track)))

    async def _watch(self, track: MediaStreamTrack) -> None:
        codes = self.seen.setdefault(track.id, set())
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                self.frames += 1
                pattern = read_pattern(frame)
                if pattern is not None:
                    codes.add(pattern[0])
        except MediaStreamError:
            pass

    async def run(self, ws: aiohttp.ClientWebSocketResponse, password: str) -> None:
        async for message in ws:
            data = json.loads(message.data)
            if data["type"] == "error":
                self.errors.append(data)
            if data["type"] != "offer":
                continue
            sdp = data["sdp"].replace("a=ice-pwd:REDACTED", f"a=ice-pwd:{password}")
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            configure_ice(self.pc, host_addresses=["127.0.0.1"])  # loopback netns
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
            await ws.send_str(json.dumps(answer))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


# --8<-- [end:client]


def _connected(client: EarlyTransceiverClient) -> bool:
    return client.pc.connectionState == "connected"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningExample]:
    options = ("--max-participants=3", "--log-level=INFO")
    async with whip_server(*options, log=tmp_path / "whip_sfu.log") as base:
        yield base


async def test_a_late_joiner_with_transceivers_made_first_publishes_and_receives(
    server: RunningExample,
) -> None:
    """Two such clients: the second joins while the first already publishes,
    so its first offer carries a forwarded track as well as its own publish
    slots. Each must see the other's picture."""
    clients: list[EarlyTransceiverClient] = []
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as http:
        _, room = await create_room(http, server)
        try:
            for code, role in ((1, "host"), (2, "participant")):
                _, grant = await join(http, room["join_url"], role=role)
                clients.append(EarlyTransceiverClient(code, 440.0 * code))
                ws = await http.ws_connect(grant["ws_url"])
                # the protocol's first message: the grant's signalling token
                await ws.send_json(
                    {"type": "hello", "token": grant["signalling_token"]}
                )
                run = clients[-1].run(ws, grant["ice"]["password"])
                tasks.append(asyncio.create_task(run))
                if code == 1:  # the first publishes before the second joins
                    await eventually(
                        lambda: any(clients[0].seen) or _connected(clients[0]),
                        LIVENESS,
                        "the first client connects",
                    )
            first, second = clients

            def each_sees_the_other() -> bool:
                return any(2 in c for c in first.seen.values()) and any(
                    1 in c for c in second.seen.values()
                )

            try:
                await eventually(each_sees_the_other, LIVENESS, "pictures")
            except AssertionError as exc:
                states = [(c.seen, c.frames, c.errors) for c in clients]
                raise AssertionError(f"{exc}: {states}") from None
            assert first.errors == second.errors == []
        finally:
            for task in tasks:
                task.cancel()
            for client in clients:
                await client.close()


async def test_a_client_declining_its_tracks_is_told_so(
    sfu: SFU, peers: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that answers the tracks it is sent ``inactive`` receives
    nothing and would see no error: the server says so, once, and logs it."""
    room = sfu.create_room("r", max_participants=2)
    host = await peers("host", 1).join(room, "host")
    await eventually(lambda: room.members["host"].publications, what="published")
    client = await MemorySignalling().join(room, "decliner", "participant")
    pc = RTCPeerConnection()
    try:
        with caplog.at_level(logging.WARNING, logger="pysfu"):
            offer = await client.receive_type(Offer, LIVENESS)
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            for transceiver in pc.getTransceivers():
                transceiver.direction = "inactive"
            await pc.setLocalDescription(await pc.createAnswer())
            await client.send(Answer(pc.localDescription.sdp))
            error = await client.receive_type(Error, LIVENESS)
        assert error.code == "track_declined"
        assert "host/video" in error.message and "host/audio" in error.message
        assert [r for r in caplog.records if "receives nothing" in r.message]
        assert host.errors == []
    finally:
        await pc.close()


async def test_a_client_that_says_it_sends_but_sends_nothing_is_told_so(
    sfu: SFU, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its answer says ``sendonly`` on the publish slots, then nothing comes
    (a send track never attached, packets the server cannot route): the
    server says so, once, and logs it."""
    monkeypatch.setattr(participant_module, "NO_MEDIA_NOTICE_AFTER", 0.5)
    room = sfu.create_room("r", max_participants=2)
    client = await MemorySignalling().join(room, "mute", "host")
    pc = RTCPeerConnection()
    try:
        with caplog.at_level(logging.WARNING, logger="pysfu"):
            offer = await client.receive_type(Offer, LIVENESS)
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            for transceiver in pc.getTransceivers():
                transceiver.direction = "sendonly"  # and no track, ever
            configure_ice(pc, host_addresses=["127.0.0.1"])
            await pc.setLocalDescription(await pc.createAnswer())
            await client.send(Answer(pc.localDescription.sdp))
            error = await client.receive_type(Error, LIVENESS)
        assert error.code == "no_media"
        assert pc.connectionState == "connected"
        assert [r for r in caplog.records if "nothing arrived" in r.message]
    finally:
        await pc.close()


async def test_a_publishing_client_is_not_told_anything(
    sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(participant_module, "NO_MEDIA_NOTICE_AFTER", 3600.0)
    room = sfu.create_room("r", max_participants=2)
    host = await peers("host", 1).join(room, "host")
    member = room.members["host"]
    await eventually(
        lambda: any(f.stats.packets_received for f in member.publications.values()),
        LIVENESS,
        "the host's packets",
    )
    monkeypatch.setattr(participant_module, "NO_MEDIA_NOTICE_AFTER", 0.0)
    await member._check_media_arrives()  # the check, run now
    await asyncio.sleep(0.1)  # let the host's signalling loop read its inbox
    assert host.errors == []
