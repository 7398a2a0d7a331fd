"""Shared by the attack tests on examples/ws_sfu.py: clients from chosen
loopback addresses (all of 127.0.0.0/8 reaches the server, so an attacker and
a rightful user can have different addresses), and a watched room."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from ..example_server import RunningExample
from ..helpers import child_pids, udp_port_owner
from ..peers import Peer, PeerFactory, ReceivedTrack
from ..ws_client import WsClient, create_room, join


@contextlib.asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from ``address`` (127.x.y.z)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def ask_to_join(
    http: aiohttp.ClientSession, join_url: str, role: str = "participant"
) -> tuple[int, Any]:
    """POST the join request; (status, body)."""
    return await join(http, join_url, role=role)


@dataclass
class Member:
    """A connected member of a room: its join answer, peer and socket."""

    grant: dict[str, Any]
    peer: Peer
    ws: WsClient


async def connect(
    http: aiohttp.ClientSession, peers: PeerFactory, grant: dict[str, Any], code: int
) -> Member:
    """Open ``grant``'s session (hello with its token) with an aiortc peer."""
    peer = peers(grant["participant_id"], code)
    client = await WsClient.connect(http, grant)
    peer.attach(client)
    return Member(grant, peer, client)


async def room_with_host(
    http: aiohttp.ClientSession, base: str, peers: PeerFactory, code: int = 1
) -> tuple[dict[str, Any], Member]:
    """Create a room and connect its host; (the room's answer, the host)."""
    room = await new_room(http, base)
    return room, await join_room(http, room, peers, code, role="host")


async def new_room(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """Create a room; the server's answer. (With ``--workers``, the pool
    places rooms in turn as they are created: create them all first to know
    which share a worker process.)"""
    status, room = await create_room(http, base)
    assert status == 201, room
    return room


async def join_room(
    http: aiohttp.ClientSession,
    room: dict[str, Any],
    peers: PeerFactory,
    code: int,
    role: str = "participant",
) -> Member:
    """Join ``room`` as ``role`` and connect with an aiortc peer."""
    status, grant = await join(http, room["join_url"], role=role)
    assert status == 200, grant
    return await connect(http, peers, grant, code)


def server_port(client: WsClient) -> int:
    """The port of the server's loopback ICE candidate in its first offer."""
    sdp = next(m["sdp"] for m in client.raw if m["type"] == "offer")
    found = re.search(r"a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp)
    assert found, sdp
    return int(found.group(1))


def worker_of(base: RunningExample, client: WsClient) -> int | None:
    """The pid of the worker process holding ``client``'s connection."""
    return udp_port_owner(server_port(client), child_pids(base.process.pid))


@dataclass
class Usage:
    """CPU seconds and resident memory of a process at one moment."""

    cpu: float
    rss: int

    @classmethod
    def of(cls, pid: int) -> Usage:
        """Of ``pid`` and its worker processes together."""
        root = psutil.Process(pid)
        cpu, rss = 0.0, 0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
        return cls(cpu, rss)


class FrameMeter:
    """The frames of ``publisher_code`` a watched track decoded in each
    second (each turn of a 1 s sampler: longer if this process lagged), while
    running: ``async with FrameMeter(track, code) as meter: ...``."""

    def __init__(self, track: ReceivedTrack, publisher_code: int) -> None:
        self.track = track
        self.code = publisher_code
        #: (seconds the turn took, frames decoded in it)
        self.seconds: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def _frames(self) -> int:
        return sum(1 for code, _ in self.track.patterns if code == self.code)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        last, then = self._frames(), loop.time()
        while True:
            await asyncio.sleep(1.0)
            frames, now = self._frames(), loop.time()
            self.seconds.append((now - then, frames - last))
            last, then = frames, now

    async def __aenter__(self) -> FrameMeter:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def empty_seconds(self) -> list[int]:
        """The turns (0-based) in which no frame was decoded."""
        return [i for i, (_, frames) in enumerate(self.seconds) if frames == 0]

    def rate(self) -> str:
        """Frames per second, overall and the lowest turn, for messages."""
        if not self.seconds:
            return "no full second measured"
        took = sum(t for t, _ in self.seconds)
        frames = sum(f for _, f in self.seconds)
        lowest = min(f / t for t, f in self.seconds)
        return (
            f"{frames / took:.1f} fps over {took:.1f} s"
            f" ({len(self.seconds)} turns, lowest {lowest:.1f} fps)"
        )


async def scrape(
    http: aiohttp.ClientSession, base: str, token: str
) -> dict[str, float]:
    """The server's /metrics, as ``name[label values]``: value."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{base}/metrics", headers=headers) as response:
        assert response.status == 200
        text = await response.text()
    return {
        sample.name + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
