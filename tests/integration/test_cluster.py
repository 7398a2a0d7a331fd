"""pysfu.cluster against a real redis-server: one owner per room under
concurrent claims, single use across nodes, failover when a node dies, and
nodes that ride out a Redis restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pysfu.cluster import ClusterNode, NodeFenced

from ..example_server import stop_process
from ..helpers import eventually
from ..redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
#: Short, so failover tests are quick, yet long enough that the test
#: process's nodes, heartbeating every TTL/3, do not lapse on a loaded
#: machine (with 2 s a test failed in a run loaded with stress-ng and a
#: parallel browser suite).
TTL = 5.0


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[ClusterNode]]:
    made = [
        ClusterNode(
            redis_server.url, url=f"http://node{i}.test", node_id=f"n{i}", ttl=TTL
        )
        for i in range(3)
    ]
    for node in made:
        await node.start()
    yield made
    for node in made:
        await node.close()


@pytest.mark.parametrize("round_", range(10))
async def test_concurrent_claims_yield_one_owner(
    nodes: list[ClusterNode], round_: int
) -> None:
    room = f"lobby-{round_}"
    claims = await asyncio.gather(*(nodes[i % 3].claim_room(room) for i in range(50)))
    owners = {c.owner for c in claims}
    assert len(owners) == 1
    (owner,) = owners
    assert {c.epoch for c in claims} == {1}
    # a claim is "mine" exactly when the owner made it
    assert [c.mine for c in claims] == [nodes[i % 3].id == owner for i in range(50)]
    assert [n.id for n in nodes if room in n.rooms] == [owner]


@pytest.mark.parametrize("round_", range(20))
async def test_concurrent_placements_yield_one_owner(
    nodes: list[ClusterNode], round_: int
) -> None:
    """50 claims of one room at once, each node placing it on itself or on
    another (claim_room_for): one owner, at epoch 1, one placement; the
    owner's heartbeat takes the room up, nobody else's."""
    room = f"placed-{round_}"
    targets = [nodes[(i + i // 3) % 3] for i in range(50)]
    claims = await asyncio.gather(
        *(
            nodes[i % 3].claim_room_for(room, targets[i].id, {"max_participants": "2"})
            for i in range(50)
        )
    )
    assert None not in claims
    owners = {c.owner for c in claims if c is not None}
    assert len(owners) == 1
    (owner_id,) = owners
    assert {c.epoch for c in claims if c is not None} == {1}
    # a placement on another node "placed it" once at most, and on its owner
    placed = [
        t.id
        for i, (t, c) in enumerate(zip(targets, claims, strict=True))
        if c is not None and c.mine and t is not nodes[i % 3]
    ]
    assert placed in ([], [owner_id])
    for node in nodes:
        await node.heartbeat()
    owner = next(n for n in nodes if n.id == owner_id)
    assert room in owner.rooms or room in owner.placed
    assert [n.id for n in nodes if room in n.rooms or room in n.placed] == [owner_id]
    assert (await nodes[0].room_fields(room))["max_participants"] == "2"
    # taken up by its owner: the claim is its own at the same epoch
    claim = await owner.claim_room(room)
    assert (claim.mine, claim.epoch) == (True, 1)
    assert room in owner.rooms and room not in owner.placed


async def test_a_placement_counts_at_once_and_skips_a_dead_node(
    nodes: list[ClusterNode],
) -> None:
    """Rooms placed on a node count in its load before its heartbeat
    publishes them (a burst spreads); a placement on a node that is no
    longer live is refused (None), and nothing is claimed."""
    first = await nodes[0].place_room("burst-0")
    assert first.id == nodes[0].id  # an even cluster: the node asked
    assert (await nodes[0].claim_room_for("burst-0", first.id)) is not None
    chosen = []
    for i in range(1, 3):
        home = await nodes[0].place_room(f"burst-{i}")
        claim = await nodes[0].claim_room_for(f"burst-{i}", home.id)
        assert claim is not None and claim.mine and claim.owner == home.id
        chosen.append(home.id)
    assert sorted(chosen) == sorted([nodes[1].id, nodes[2].id])
    await nodes[2].close()
    assert await nodes[0].claim_room_for("burst-3", nodes[2].id) is None
    assert await nodes[0].owner_of("burst-3") is None


async def test_a_clean_shutdown_hands_back_the_rooms_placed_on_the_node(
    nodes: list[ClusterNode],
) -> None:
    """Rooms placed on n1 that it has not created (taken from its set by a
    heartbeat, or still in it) keep their fields but name no node once n1
    closes, so that a join through any node re-creates them; its own room is
    released; its set is gone."""
    first, second, other = nodes
    fields = {"max_participants": "4"}
    assert (await first.claim_room_for("taken", second.id, fields)) is not None
    await second.heartbeat()  # no on_room_placed: taken, never created
    assert second.placed == {"taken"}
    assert (await first.claim_room_for("waiting", second.id, fields)) is not None
    assert (await second.claim_room("own")).mine
    await second.close()
    for room in ("taken", "waiting"):
        record = await first.room_fields(room)
        assert "node" not in record and record["max_participants"] == "4"
        assert await first.owner_of(room) is None
        # any node takes it up now, at the next epoch
        claim = await other.claim_room(room)
        assert (claim.mine, claim.epoch) == (True, 2)
    assert await first.room_fields("own") == {}
    assert not await first.redis.exists(f"pysfu:placed:{second.id}")


async def test_rooms_spread_over_the_least_loaded_nodes(
    nodes: list[ClusterNode],
) -> None:
    for i in range(9):
        target = await nodes[0].place_room(f"room-{i}")
        node = next(n for n in nodes if n.id == target.id)
        assert (await node.claim_room(f"room-{i}")).mine
        await node.heartbeat()  # publishes its new load at once
    assert sorted(len(n.rooms) for n in nodes) == [3, 3, 3]
    # a room that exists is placed on its owner, whatever the load
    owner = next(n for n in nodes if "room-0" in n.rooms)
    assert (await nodes[2].place_room("room-0")).id == owner.id
    assert (await nodes[1].owner_of("room-0")).url == owner.url  # type: ignore[union-attr]


async def test_a_credential_is_spent_once_across_nodes(
    nodes: list[ClusterNode],
) -> None:
    spent = await asyncio.gather(
        *(nodes[i % 3].consume_once("grant-abc", ttl=30) for i in range(50))
    )
    assert spent.count(True) == 1


def start_node(
    redis_server: RedisServer, node_id: str, room: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cluster_node",
            redis_server.url,
            node_id,
            room,
            str(TTL),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"claimed 1"
    return process


@pytest.mark.parametrize("round_", range(5))
async def test_three_node_processes_racing_for_one_room_yield_one_owner(
    redis_server: RedisServer, round_: int
) -> None:
    """Three node processes, 17 claims each at once (half claiming the room
    for themselves, half placing it on node p1): one owner, seen by every
    claim of every process, at epoch 1 (nobody granted it twice)."""
    room = f"race-{round_}"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.cluster_node",
                redis_server.url,
                f"p{i}",
                room,
                str(TTL),
                "17",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for i in range(3)
    ]
    directory = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        outputs = [p.stdout for p in processes if p.stdout is not None]
        for output in outputs:
            assert await asyncio.to_thread(output.readline) == b"ready\n"
        await directory.set("pysfu:go", "p1")  # all at once
        reports = [
            (await asyncio.to_thread(output.readline)).decode().split()
            for output in outputs
        ]
        assert [r[0::2] for r in reports] == [["owners", "epochs", "mine"]] * 3
        owners = {r[1] for r in reports}
        assert len(owners) == 1 and "," not in next(iter(owners))
        (owner,) = owners
        assert {r[3] for r in reports} == {"1"}
        assert await directory.hgetall(f"pysfu:room:{room}") == {
            "node": owner,
            "epoch": "1",
        }
        # the processes that do not own it: one placement (on p1) at most
        others = [int(r[5]) for i, r in enumerate(reports) if f"p{i}" != owner]
        assert sum(others) <= 1
    finally:
        for process in processes:
            stop_process(process)
        await directory.aclose()


async def take_over(node: ClusterNode, room: str) -> None:
    """Claim ``room`` until its owner's registration has expired."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60  # a liveness bound, many TTLs
    while not (await node.claim_room(room)).mine:
        assert loop.time() < deadline, f"{room} was never freed"
        await asyncio.sleep(0.2)


async def test_a_killed_node_s_rooms_move_to_a_live_node(
    redis_server: RedisServer, nodes: list[ClusterNode]
) -> None:
    process = start_node(redis_server, "doomed", "r")
    try:
        survivor = nodes[0]
        claim = await survivor.claim_room("r")
        assert not claim.mine and claim.owner == "doomed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        await take_over(survivor, "r")
        assert survivor.rooms["r"] == 2  # a new epoch
        assert await survivor.holds("r")
        assert "doomed" not in {n.id for n in await survivor.live_nodes()}
    finally:
        stop_process(process)


async def test_nodes_ride_out_a_redis_restart(
    redis_server: RedisServer, nodes: list[ClusterNode]
) -> None:
    a, b, _ = nodes
    assert (await a.claim_room("kept")).mine
    lost: list[str] = []
    a.on_room_lost = lost.append
    redis_server.stop()
    # unreachable for longer than the TTL: nobody admits
    await eventually(lambda: not a.admitting and not b.admitting, timeout=60)
    with pytest.raises(NodeFenced):
        await b.claim_room("new")
    redis_server.start()  # empty: no persistence
    await eventually(lambda: a.admitting and b.admitting, timeout=60)
    # the room is still a's, under a record re-made after the restart
    await eventually(lambda: "kept" in a.rooms, timeout=60)
    assert await a.holds("kept")
    assert not (await b.claim_room("kept")).mine
    assert (await b.claim_room("new")).mine
    assert lost == []


async def test_a_node_paused_past_its_ttl_gives_up_rooms_taken_meanwhile(
    redis_server: RedisServer, nodes: list[ClusterNode]
) -> None:
    process = start_node(redis_server, "sleepy", "contested")
    try:
        os.kill(process.pid, signal.SIGSTOP)  # a frozen VM, a long pause
        await take_over(nodes[1], "contested")
        os.kill(process.pid, signal.SIGCONT)
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.strip() == b"lost contested"
        assert await nodes[1].holds("contested")
    finally:
        stop_process(process)
