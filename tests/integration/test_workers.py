"""Rooms spread over worker processes: real workers, real aiortc peers."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pysfu import (
    SFU,
    ActiveSpeakerChangedEvent,
    DataMessageEvent,
    DuplicateParticipant,
    HostTaken,
    ParticipantJoinedEvent,
    RoomClosedEvent,
    RoomEvent,
    RoomExists,
    RoomFull,
    RoomNotFound,
    SFUConfig,
    SpeakingChangedEvent,
)
from pysfu.messages import Speaking
from pysfu.rooms import JoinRequest, RoomOptions, Rooms
from pysfu.signalling import (
    Candidate,
    ClientMessage,
    Error,
    Leave,
    MemorySignalling,
    RoomClosed,
    ServerMessage,
    deliver_json,
    to_json,
)
from pysfu.signalling.adapter import MAX_MESSAGE_LENGTH
from pysfu.workers import RemoteParticipant, WorkerFailed, WorkerPool
from pysfu.workers.codec import server_message_from_json
from pysfu.workers.framing import FrameDecoder, FrameError, encode_frame

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, eventually, process_alive
from ..peers import ParticipantLeft, Peer, PeerFactory

# ---------------------------------------------------------------------------
# the pipe protocol, without processes


def test_frames_survive_any_chunking() -> None:
    objects = [{"type": "a", "n": i, "text": "é" * i} for i in range(5)]
    stream = b"".join(encode_frame(o) for o in objects)
    for size in (1, 3, len(stream)):
        decoder = FrameDecoder()
        out: list[dict[str, Any]] = []
        for start in range(0, len(stream), size):
            out += decoder.feed(stream[start : start + size])
        assert out == objects
        assert decoder.pending == 0


@pytest.mark.parametrize(
    "data",
    [
        (10).to_bytes(4, "big") + b"not json!!",
        (2).to_bytes(4, "big") + b"[]",
        (1 << 30).to_bytes(4, "big"),
    ],
    ids=["not-json", "not-object", "oversized"],
)
def test_corrupt_streams_are_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(data)


# Every message, event and error through the codec: tests/unit/test_worker_codec.py


# ---------------------------------------------------------------------------
# clients of remote participants


class PoolClient:
    """The client end of a remote participant, shaped like MemoryClient."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.participant: RemoteParticipant | None = None

    async def deliver(self, message: ServerMessage) -> None:
        self.inbox.put_nowait(message)

    async def send(self, message: ClientMessage) -> None:
        if self.participant is not None:
            await self.participant.handle(message)


async def join(
    pool: WorkerPool, peer: Peer, room_id: str, role: str = "participant"
) -> Peer:
    client = PoolClient()
    client.participant = await pool.join(room_id, peer.name, role, client.deliver)
    return peer.attach(client)


def remote(peer: Peer) -> RemoteParticipant:
    assert isinstance(peer.client, PoolClient) and peer.client.participant
    return peer.client.participant


def running(pid: int) -> bool:
    """Whether a process exists (reaped children do not)."""
    return Path(f"/proc/{pid}").exists()


def open_fds() -> int:
    """File descriptors open in this process (where the pool runs), after
    whatever earlier tests left for the garbage collector has gone."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    workers = WorkerPool(2, SFUConfig(ice=LOOPBACK))
    await workers.start()
    yield workers
    pids = [w.pid for w in workers.workers if w.pid is not None]
    await workers.close()
    assert not [pid for pid in pids if running(pid)], "a worker outlived close()"


# ---------------------------------------------------------------------------
# media through workers


async def test_rooms_on_two_workers_forward_and_stay_apart(
    pool: WorkerPool, peers: PeerFactory
) -> None:
    events: list[RoomEvent] = []
    pool.add_listener(events.append)
    await pool.create_room("a", max_participants=2)
    await pool.create_room("b", max_participants=2)
    assert {pool.room_worker("a"), pool.room_worker("b")} == {0, 1}

    host_a = await join(pool, peers("host-a", code=1, tone=440), "a", "host")
    guest_a = await join(pool, peers("guest-a", code=2, tone=660), "a")
    host_b = await join(pool, peers("host-b", code=3, tone=880), "b", "host")
    guest_b = await join(pool, peers("guest-b", code=4, tone=1100), "b")

    for viewer, publisher in [
        (host_a, guest_a),
        (guest_a, host_a),
        (host_b, guest_b),
        (guest_b, host_b),
    ]:
        track = await viewer.wait_video_from(publisher)
        assert track.codes() == {publisher.code}
        await viewer.wait_audio_from(publisher)
    # each room sees only its own publishers, by track and by picture
    assert set(host_a.received) == {"guest-a/video", "guest-a/audio"}
    assert set(host_b.received) == {"guest-b/video", "guest-b/audio"}
    seen_a = {
        c for p in (host_a, guest_a) for t in p.received.values() for c in t.codes()
    }
    seen_b = {
        c for p in (host_b, guest_b) for t in p.received.values() for c in t.codes()
    }
    assert seen_a == {1, 2} and seen_b == {3, 4}

    stats = await pool.stats()
    assert {r.room_id for r in stats.rooms} == {"a", "b"}
    assert stats.participants == 4 and stats.packets_forwarded > 0
    joined = [e for e in events if isinstance(e, ParticipantJoinedEvent)]
    assert {(e.room_id, e.participant_id) for e in joined} == {
        ("a", "host-a"),
        ("a", "guest-a"),
        ("b", "host-b"),
        ("b", "guest-b"),
    }

    # a participant leaves: the host sees it go, its tracks end
    await guest_a.client.send(Leave())
    await remote(guest_a).wait_closed()
    await eventually(lambda: host_a.saw(ParticipantLeft), what="participant-left")
    video = host_a.track_from("guest-a", "video")
    assert video is not None
    await asyncio.wait_for(video.ended.wait(), LIVENESS)
    totals = await pool.totals()
    assert totals.participants_left == 1 and totals.packets_forwarded["video"] > 0
    # room b did not notice
    frames = host_b.track_from("guest-b", "video").frames  # type: ignore[union-attr]
    await eventually(
        lambda: host_b.track_from("guest-b", "video").frames > frames + 10,  # type: ignore[union-attr]
        what="room b still flowing",
    )


async def test_speakers_and_data_reach_listeners_and_clients_through_workers(
    pool: WorkerPool, peers: PeerFactory
) -> None:
    """Every kind of event and message crosses the pipe, not only joins.

    The worker pipe once carried a hand-written copy of the message and event
    lists: ``speaking`` messages and the speaker and data events were dropped
    as "bad frames", and binary data could not be encoded at all.
    """
    events: list[RoomEvent] = []
    pool.add_listener(events.append)
    await pool.create_room("s", max_participants=2)
    host = await join(
        pool, peers("host", code=1, publish_video=False, tone=440), "s", "host"
    )
    listener = await join(
        pool,
        peers("listener", code=2, publish_video=False, publish_audio=False),
        "s",
    )

    def told(peer: Peer) -> str | None:
        said = [m for m in peer.messages if isinstance(m, Speaking)]
        return said[-1].active if said else None

    await eventually(
        lambda: any(
            isinstance(e, SpeakingChangedEvent)
            and (e.room_id, e.participant_id, e.speaking) == ("s", "host", True)
            for e in events
        ),
        what="the pool listener to hear the host speak",
    )
    await eventually(
        lambda: any(
            isinstance(e, ActiveSpeakerChangedEvent) and e.participant_id == "host"
            for e in events
        ),
        what="the host as the active speaker, at the pool listener",
    )
    await eventually(lambda: told(listener) == "host", what="'speaking' to a client")
    await eventually(lambda: told(host) == "host", what="'speaking' to the speaker")

    # data, binary and text: relayed, and the pool listener sees what was sent
    channel = await host.wait_channel()
    await listener.wait_channel()
    channel.send(b"\x00\xffbinary")
    channel.send("text ✓")
    await eventually(
        lambda: len([e for e in events if isinstance(e, DataMessageEvent)]) == 2,
        what="both data events at the pool listener",
    )
    relayed = [
        (e.participant_id, e.data, e.recipients)
        for e in events
        if isinstance(e, DataMessageEvent)
    ]
    assert relayed == [
        ("host", b"\x00\xffbinary", ("listener",)),
        ("host", "text ✓", ("listener",)),
    ]


async def test_close_tells_everyone_and_leaks_nothing(peers: PeerFactory) -> None:
    fds = open_fds()
    pool = WorkerPool(2, SFUConfig(ice=LOOPBACK))
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2 and all(running(pid) for pid in pids)
    await pool.create_room("a")
    host = await join(pool, peers("host", code=1), "a", "host")
    await eventually(lambda: host.answers_sent >= 1, what="first answer")

    await pool.close()

    assert not [pid for pid in pids if running(pid)]
    await eventually(lambda: host.saw(RoomClosed), what="room-closed")
    assert host.saw(RoomClosed)[0].reason == "server shutting down"
    assert remote(host).closed
    assert pool.rooms == {}
    await pool.close()  # idempotent
    # the pool runs in this process, and so does the test's client: its
    # sockets are not the pool's to close
    await host.close()
    assert open_fds() == fds


async def test_a_killed_worker_closes_its_rooms_only(peers: PeerFactory) -> None:
    pool = WorkerPool(2, SFUConfig(ice=LOOPBACK), restart=True)
    await pool.start()
    try:
        events: list[RoomEvent] = []
        pool.add_listener(events.append)
        await pool.create_room("doomed", max_participants=1)
        await pool.create_room("fine", max_participants=1)
        host_d = await join(pool, peers("host-d", code=1), "doomed", "host")
        guest_d = await join(pool, peers("guest-d", code=2), "doomed")
        host_f = await join(pool, peers("host-f", code=3), "fine", "host")
        guest_f = await join(pool, peers("guest-f", code=4), "fine")
        await host_d.wait_video_from(guest_d)
        await host_f.wait_video_from(guest_f)

        victim = pool.workers[pool.room_worker("doomed")]
        victim_pid = victim.pid
        assert victim_pid is not None
        await eventually(lambda: victim.cpu_seconds > 0, what="the victim's usage")
        spent = pool.cpu_seconds()
        os.kill(victim_pid, signal.SIGKILL)

        for peer in (host_d, guest_d):
            await eventually(lambda p=peer: p.saw(RoomClosed), what="room-closed")
            assert peer.saw(RoomClosed)[0].reason == "worker failed"
            assert remote(peer).closed
        assert RoomClosedEvent("doomed", "worker failed") in events
        with pytest.raises(RoomNotFound):
            await pool.join("doomed", "late", "participant", PoolClient().deliver)
        await eventually(lambda: not running(victim_pid), what="dead worker reaped")

        # the other worker's room keeps flowing
        track = host_f.track_from("guest-f", "video")
        assert track is not None
        frames = track.frames
        await eventually(lambda: track.frames > frames + 10, what="room fine flows")
        assert "fine" in pool.rooms

        # restart=True: a fresh worker takes the slot and takes rooms again
        await eventually(lambda: len(pool.pids) == 2, what="restarted worker")
        assert victim_pid not in pool.pids
        # the dead worker's CPU stays counted: a heartbeat's rate never drops
        # below zero
        assert pool.cpu_seconds() >= spent
        await pool.create_room("next")
        assert pool.room_worker("next") == victim.index
    finally:
        await pool.close()


async def test_the_pool_knows_its_load_and_its_workers_cpu(
    pool: WorkerPool, peers: PeerFactory
) -> None:
    """What a cluster node's heartbeat publishes for its workers: rooms and
    participants from the pool's own record, CPU from the workers' Usage
    notices (sent unasked through the pipe)."""
    assert pool.load() == (0, 0)
    await eventually(
        lambda: all(w.cpu_seconds > 0 for w in pool.workers), what="usage notices"
    )
    await pool.create_room("r", max_participants=1)
    host = await join(pool, peers("host", code=1), "r", "host")
    guest = await join(pool, peers("guest", code=2), "r")
    assert pool.load() == (1, 2)
    await host.wait_video_from(guest)
    worker = pool.workers[pool.room_worker("r")]
    before, total = worker.cpu_seconds, pool.cpu_seconds()
    await eventually(lambda: worker.cpu_seconds > before, what="a newer usage")
    assert pool.cpu_seconds() > total
    await pool.close_room("r")
    await eventually(lambda: pool.load() == (0, 0), what="the room gone")


async def test_remote_errors_match_in_process_ones(pool: WorkerPool, sfu: SFU) -> None:
    """Bad input to a remote participant gets the same specific errors."""
    bad_texts: list[str | bytes] = [
        "{not json",
        "[]",
        '{"type": 5}',
        '{"type": "dance"}',
        '{"type": "answer"}',
        '{"type": "candidate", "candidate": "garbage"}',
        '{"type": "candidate", "candidate": "", "sdp_mline_index": "0"}',
        b"\xff\xfe",
        "x" * (MAX_MESSAGE_LENGTH + 1),
    ]

    async def codes(target: Any, inbox: asyncio.Queue[ServerMessage]) -> list[str]:
        got: list[str] = []
        for text in bad_texts:
            await deliver_json(target, text)
            while True:
                message = await asyncio.wait_for(inbox.get(), LIVENESS)
                if isinstance(message, Error):
                    got.append(message.code)
                    break
        return got

    room = sfu.create_room("local")
    local = await MemorySignalling().join(room, "host", "host")
    await pool.create_room("remote")
    client = PoolClient()
    participant = await pool.join("remote", "host", "host", client.deliver)

    expected = await codes(local.participant, local.inbox)
    assert expected == [
        "bad_json",
        "bad_message",
        "bad_message",
        "unknown_type",
        "bad_message",
        "bad_candidate",
        "bad_message",
        "bad_json",
        "too_large",
    ]
    assert await codes(participant, client.inbox) == expected
    stats = await pool.stats()
    assert stats.rooms[0].members[0].signalling_errors == len(expected)

    # join refusals are the same exception classes as Room.join's
    for error, call in [
        (HostTaken, lambda: pool.join("remote", "h2", "host", client.deliver)),
        (
            DuplicateParticipant,
            lambda: pool.join("remote", "host", "participant", client.deliver),
        ),
        (
            RoomNotFound,
            lambda: pool.join("nowhere", "p", "participant", client.deliver),
        ),
        (
            ValueError,
            lambda: pool.join(
                "remote", "p", "participant", client.deliver, ice_password="short"
            ),
        ),
        (RoomExists, lambda: pool.create_room("remote")),
    ]:
        with pytest.raises(error):
            await call()
    await pool.join("remote", "p1", "participant", client.deliver)
    with pytest.raises(RoomFull):
        await pool.join("remote", "p2", "participant", client.deliver)
    with pytest.raises(ValueError):
        WorkerPool(0)


async def answers_while_closing(
    rooms: Rooms[Any], held: Callable[[], Collection[str]], how: str
) -> list[str]:
    """What ``seats`` answers for a room of ``rooms`` (whose ids ``held()``
    lists) while it closes (``how``: its host leaves, or close_room), asked
    when its guest is told ``room-closed``. (A join in that window is
    refused by the room itself, in its worker; the pool's reader, which
    calls this outbox, could not wait for that answer.)"""
    room_id = await rooms.create_room(RoomOptions(max_participants=2))
    answers: list[str] = []

    async def guest_outbox(message: ServerMessage) -> None:
        if not isinstance(message, RoomClosed):
            return
        try:
            rooms.seats(room_id)
        except RoomNotFound:
            answers.append("seats refused")
        else:
            answers.append("seats granted")

    host = await rooms.join(JoinRequest(room_id, "host", "host", PoolClient().deliver))
    await rooms.join(JoinRequest(room_id, "guest", "participant", guest_outbox))
    if how == "host left":
        await host.leave()
    else:
        await rooms.close_room(room_id)
    await eventually(lambda: answers, what="the closing room's answer")
    await eventually(lambda: room_id not in held(), what="the room gone")
    return answers


@pytest.mark.parametrize("how", ["host left", "close_room"])
async def test_a_closing_room_grants_no_seat_as_in_process(
    pool: WorkerPool, sfu: SFU, how: str
) -> None:
    """From a room's first ``room-closed`` to a member until it is gone, its
    seats are refused with RoomNotFound, in a worker as in this process
    (admission must not grant a seat in a room going away): when its host
    leaves, and on close_room."""
    refused = ["seats refused"]
    in_process = await answers_while_closing(sfu.as_rooms(), lambda: sfu.rooms, how)
    assert in_process == refused
    assert await answers_while_closing(pool, lambda: pool.rooms, how) == refused


async def test_rate_limit_applies_before_the_pipe(pool: WorkerPool) -> None:
    await pool.create_room("r")
    client = PoolClient()
    participant = await pool.join("r", "host", "host", client.deliver)
    for _ in range(200):
        # end of candidates: harmless, but counted like any message
        await participant.handle(Candidate(candidate=""))
    await eventually(
        lambda: any(
            isinstance(m, Error) and m.code == "rate_limited"
            for m in list(client.inbox._queue)  # type: ignore[attr-defined]
        ),
        what="rate_limited error",
    )


def test_workers_exit_when_the_parent_dies(tmp_path: Path) -> None:
    """A worker whose pool process is killed sees its socket close and exits."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from pysfu.workers import WorkerPool

        async def main():
            pool = WorkerPool(2)
            await pool.start()
            print(json.dumps(pool.pids), flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(running(pid) for pid in pids)
        parent.kill()
        parent.wait(timeout=30)
        # orphans are reparented and reaped by init (or this namespace's reaper)
        deadline = time.monotonic() + LIVENESS
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in pids if process_alive(pid)]
        assert not survivors, "worker outlived its parent"
    finally:
        parent.kill()
        parent.wait(timeout=30)


async def test_requests_to_a_dead_pool_fail_cleanly() -> None:
    pool = WorkerPool(1, SFUConfig(ice=LOOPBACK))
    await pool.start()
    await pool.close()
    with pytest.raises(WorkerFailed):
        await pool.create_room("r")


# ---------------------------------------------------------------------------
# docs/snippets/workers.py


def _snippets() -> ModuleType:
    path = Path(__file__).parents[2] / "docs" / "snippets" / "workers.py"
    spec = importlib.util.spec_from_file_location("docs_snippets_workers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class JsonClient:
    """A client speaking JSON text to the snippet's ``session``."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.to_server: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, message: ClientMessage) -> None:
        self.to_server.put_nowait(json.dumps(to_json(message)))

    async def from_server(self, text: str) -> None:
        self.inbox.put_nowait(server_message_from_json(json.loads(text)))


async def test_how_to_snippets(peers: PeerFactory) -> None:
    docs = _snippets()
    pool = await docs.start_pool()
    sessions: list[asyncio.Task[None]] = []
    try:
        log: list[str] = []
        docs.log_events(pool, log)
        room_id = await pool.create_room("docs", max_participants=1)
        clients, made = [], []
        for name, code, role in [("host", 1, "host"), ("guest", 2, "participant")]:
            client = JsonClient()
            clients.append(client)
            sessions.append(
                asyncio.create_task(
                    docs.session(
                        pool,
                        room_id,
                        name,
                        role,
                        client.to_server.get,
                        client.from_server,
                    )
                )
            )
            made.append(peers(name, code).attach(client))
        await made[0].wait_video_from(made[1])
        await made[1].wait_video_from(made[0])
        assert await docs.occupancy(pool) == {"docs": (pool.room_worker("docs"), 2)}
        # the guest's client goes away: its session leaves the room
        clients[1].to_server.put_nowait(None)
        await asyncio.wait_for(sessions[1], LIVENESS)
        await eventually(
            lambda: "ParticipantLeftEvent docs" in log, what="participant left"
        )
        assert log[:2] == ["ParticipantJoinedEvent docs"] * 2
    finally:
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        await pool.close()


async def test_without_restart_new_rooms_go_to_the_survivors() -> None:
    pool = WorkerPool(2, SFUConfig(ice=LOOPBACK))
    await pool.start()
    try:
        await pool.create_room("doomed", worker=0)
        dead_pid = pool.workers[0].pid
        assert dead_pid is not None
        os.kill(dead_pid, signal.SIGKILL)
        await eventually(lambda: pool.pids == [pool.workers[1].pid], what="reaped")
        assert "doomed" not in pool.rooms
        for name in ("a", "b"):
            await pool.create_room(name)
            assert pool.room_worker(name) == 1
        with pytest.raises(WorkerFailed):
            await pool.create_room("c", worker=0)
        assert (await pool.stats()).rooms[0].room_id == "a"
    finally:
        await pool.close()
    assert not running(dead_pid)
