"""Issue 21.6 against the real example process: a CPU burner is removed.

A rogue member floods its data channel with 8 KB messages, far over the
rate limit, at ``pysfu serve`` (examples/ws_sfu.py) with a small
``--cpu-budget``: every message is dropped, but only after the server
decrypted and reassembled it, and that time is charged to the rogue. Past
its budget it gets the ``error`` ``cpu_budget`` and its signalling closes,
``/metrics`` counts the removal, and a watched room in the same process (with
``--workers=2``: in the same worker process) goes on decoding the host's
video throughout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..example_server import example_server
from ..helpers import LIVENESS, child_pids, eventually, udp_port_owner
from ..peers import Peer, PeerFactory
from ..ws_client import WsClient, create_room, join
from .app_helpers import scrape, server_port

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: 0.5 % of a core over 10 s, 50 ms of CPU. The flood crosses processes
#: here, paced by SCTP's acknowledgements: on a machine loaded 13 times over
#: (2 cores, load 26) the rogue got 366 messages through in 30 s, which cost
#: the server 0.26 s, under 0.2 s in every 10 s, and then it was dropped for
#: ICE consent, its own loop too busy to answer. An innocent member is charged
#: a few ms in 10 s (joining, RTCP); the test checks that none is removed.
BUDGET_SHARE = "0.005"
BUDGET = 0.05
#: At most this many messages: a server without a budget fails the test.
MAX_SENT = 100_000
METRICS_TOKEN = "metrics-secret"
CPU_METRIC = "pysfu_participant_cpu_seconds_total"


async def member(
    http: aiohttp.ClientSession,
    peers: PeerFactory,
    room: dict[str, Any],
    role: str,
    code: int,
    **options: Any,
) -> tuple[dict[str, Any], Peer, WsClient]:
    status, grant = await join(http, room["join_url"], role=role)
    assert status == 200, grant
    peer = peers(grant["participant_id"], code, **options)
    client = await WsClient.connect(http, grant)
    peer.attach(client)
    return grant, peer, client


async def flood(peer: Peer, removed: asyncio.Event) -> int:
    """8 KB messages on ``peer``'s data channel until it is removed (paced by
    what its SCTP stack buffers); the number sent."""
    channel = await peer.wait_channel()
    payload = "x" * 8000  # under the size limit, far over the rate limit
    sent = 0
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 2 * LIVENESS
    while (
        not removed.is_set()
        and sent < MAX_SENT
        and channel.readyState == "open"
        and loop.time() < give_up
    ):
        if channel.bufferedAmount > 128 * 1024:
            await asyncio.sleep(0.01)
            continue
        channel.send(payload)
        sent += 1
        # each message is encrypted in this process, which runs the other
        # clients too: they must keep answering ICE checks
        await asyncio.sleep(0)
    return sent


@pytest.mark.parametrize("mode", [(), ("--workers=2",)], ids=["in-process", "workers"])
async def test_a_cpu_burner_is_removed_from_the_app(
    http: aiohttp.ClientSession,
    peers: PeerFactory,
    mode: tuple[str, ...],
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    async with example_server(
        f"--cpu-budget={BUDGET_SHARE}",
        f"--metrics-token={METRICS_TOKEN}",
        "--log-level=INFO",
        *mode,
        log=log,
    ) as base:
        # every room created before anyone joins: the pool places them in
        # turn (least rooms first), so the first and third share worker 0
        rooms = []
        for _ in range(3):
            status, room = await create_room(http, base)
            assert status == 201, room
            rooms.append(room)
        watched, _, abused = rooms

        # one encoder and one decoder in this process, no audio: it runs
        # every client, and a client whose loop lags 10 s loses ICE consent
        quiet = {"publish_video": False, "publish_audio": False}
        _, host, host_ws = await member(
            http, peers, watched, "host", 1, publish_audio=False
        )
        _, viewer, viewer_ws = await member(
            http, peers, watched, "participant", 2, **quiet
        )
        track = await viewer.wait_video_from(host)
        # the rogue hosts a room of its own. With a second member in it, that
        # member (a client in this process too) lost ICE consent during the
        # flood in 2 of 8 runs on a machine loaded 15-20 times over, the
        # cause not established; the watched room is the one under test
        _, rogue, rogue_ws = await member(http, peers, abused, "host", 4, **quiet)
        await rogue.wait_channel()
        if mode:
            workers = child_pids(base.process.pid)
            owners = {
                udp_port_owner(server_port(ws), workers) for ws in (viewer_ws, rogue_ws)
            }
            assert len(owners) == 1 and owners <= set(workers), owners

        frames_before = len(track.patterns)
        removed = asyncio.Event()
        flooding = asyncio.create_task(flood(rogue, removed))
        try:
            await eventually(
                lambda: (
                    rogue_ws.closed.is_set()
                    or any(e.code == "cpu_budget" for e in rogue.errors)
                ),
                timeout=2 * LIVENESS,
                what="the rogue removed",
            )
        finally:
            removed.set()
            sent = await flooding
        # told why (among data_rate_limited, once a second, some of which may
        # follow: its data is read until it is gone), then its signalling closed
        codes = [e.code for e in rogue.errors]
        if "cpu_budget" not in codes:
            metrics = await scrape(http, base, METRICS_TOKEN)
            cpu = {k: v for k, v in metrics.items() if "cpu" in k}
            raise AssertionError(f"not removed for CPU: sent {sent}, {cpu}, {codes}")
        assert codes.count("cpu_budget") == 1, codes
        assert set(codes) <= {"cpu_budget", "data_rate_limited"}, codes
        await eventually(lambda: rogue_ws.closed.is_set(), what="rogue's socket closed")
        assert sent > 0

        # the watched room decoded the host's video through the flood, and
        # goes on; nobody else left or got an error
        assert len(track.patterns) > frames_before
        frames = len(track.patterns)
        await eventually(lambda: len(track.patterns) > frames + 30, what="decoding")
        assert {code for code, _ in track.patterns[frames:]} == {host.code}
        for ws in (host_ws, viewer_ws):
            assert not ws.closed.is_set()
            assert not [m for m in ws.raw if m["type"] == "participant-left"]
        assert not (host.errors or viewer.errors)

        metrics = await scrape(http, base, METRICS_TOKEN)
        assert metrics["pysfu_participants_removed_total[cpu_budget]"] == 1
        # (the budget counts every reason: data, and its signalling and RTCP)
        charged = sum(v for k, v in metrics.items() if k.startswith(CPU_METRIC))
        assert charged > BUDGET, metrics
        assert metrics[f"{CPU_METRIC}[data]"] > 0
        assert metrics["pysfu_participants"] == 2
    # logged once, by the process holding its connection (a worker's lines
    # are prefixed "worker N:")
    removals = [line for line in log.read_text().splitlines() if "removing it" in line]
    assert len(removals) == 1, removals
    assert "pysfu.accounting" in removals[0]
    assert removals[0].startswith("worker 0:") == bool(mode), removals
