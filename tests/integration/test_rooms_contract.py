"""The contract of :class:`pysfu.rooms.Rooms`, one suite for every implementation.

The in-process :class:`~pysfu.SFU` (through :meth:`~pysfu.SFU.as_rooms`) and
the :class:`~pysfu.workers.WorkerPool` (real worker processes) must behave
alike for everything written against the protocol: Admission, the adapters,
the metrics collector and the ``pysfu serve`` app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pysfu import (
    SFU,
    DuplicateParticipant,
    HostTaken,
    JoinRequest,
    LimitsConfig,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomClosedEvent,
    RoomExists,
    RoomFull,
    RoomNotFound,
    RoomOptions,
    Rooms,
    RoomSeats,
    SFUConfig,
    TooManyRooms,
    TrackPublishedEvent,
)
from pysfu.events import RoomEvent
from pysfu.messages import ClientMessage, ServerMessage
from pysfu.ports import SessionParticipant
from pysfu.workers import WorkerPool

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import Joined, Peer, PeerFactory, RoomClosed

MAX_ROOMS = 4


def running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(params=["sfu", "pool"])
async def rooms(request: pytest.FixtureRequest) -> AsyncIterator[Rooms[Any]]:
    """Each implementation, started, with room for ``MAX_ROOMS`` rooms."""
    config = SFUConfig(ice=LOOPBACK, limits=LimitsConfig(max_rooms=MAX_ROOMS))
    implementation: Rooms[Any]
    if request.param == "sfu":
        implementation = SFU(config).as_rooms()
    else:
        implementation = WorkerPool(2, config)
    await implementation.start()
    yield implementation
    await implementation.close()
    if isinstance(implementation, WorkerPool):
        pids = [w.pid for w in implementation.workers if w.pid is not None]
        assert not [pid for pid in pids if running(pid)], "a worker outlived close()"


class Client:
    """A client's end of a session: the server's messages in an inbox, and
    what the peer sends handed to the participant (as an adapter would)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.participant: SessionParticipant | None = None

    async def deliver(self, message: ServerMessage) -> None:
        self.inbox.put_nowait(message)

    async def send(self, message: ClientMessage) -> None:
        if self.participant is not None:
            await self.participant.handle_unlimited(message)


async def join(
    rooms: Rooms[Any], room_id: str, participant_id: str, role: str = "participant"
) -> tuple[SessionParticipant, Client]:
    client = Client()
    client.participant = await rooms.join(
        JoinRequest(room_id, participant_id, role, client.deliver)
    )
    return client.participant, client


async def join_peer(rooms: Rooms[Any], peer: Peer, room_id: str, role: str) -> Peer:
    _, client = await join(rooms, room_id, peer.name, role)
    return peer.attach(client)


# ---------------------------------------------------------------------------


async def test_creates_rooms_and_counts_their_seats(rooms: Rooms[Any]) -> None:
    assert await rooms.create_room(RoomOptions("a", max_participants=3)) == "a"
    assert rooms.seats("a") == RoomSeats("a", 3, has_host=False, participants=0)
    generated = await rooms.create_room(RoomOptions(video_codecs=("VP8",)))
    assert generated and generated != "a"
    assert rooms.seats(generated).video_codecs == ("VP8",)

    await join(rooms, "a", "host", "host")
    await join(rooms, "a", "p1")
    assert rooms.seats("a") == RoomSeats("a", 3, has_host=True, participants=1)


async def test_closing_a_room_tells_its_members_and_forgets_it(
    rooms: Rooms[Any],
) -> None:
    events: list[RoomEvent] = []
    rooms.add_listener(events.append)
    await rooms.create_room(RoomOptions("a", max_participants=2))
    member, client = await join(rooms, "a", "p1")
    await rooms.close_room("a", "bye")
    await eventually(lambda: member.closed)
    messages = [client.inbox.get_nowait() for _ in range(client.inbox.qsize())]
    assert RoomClosed("bye") in messages
    assert RoomClosedEvent("a", "bye") in events
    with pytest.raises(RoomNotFound):
        rooms.seats("a")
    with pytest.raises(RoomNotFound):
        await rooms.close_room("a")
    # the id is free again
    assert await rooms.create_room(RoomOptions("a")) == "a"


async def test_refusals_are_the_same_errors(rooms: Rooms[Any]) -> None:
    await rooms.create_room(RoomOptions("a", max_participants=1))
    with pytest.raises(RoomExists):
        await rooms.create_room(RoomOptions("a"))
    with pytest.raises(RoomNotFound):
        rooms.seats("nowhere")
    with pytest.raises(RoomNotFound):
        await join(rooms, "nowhere", "p")
    await join(rooms, "a", "host", "host")
    with pytest.raises(HostTaken):
        await join(rooms, "a", "host2", "host")
    with pytest.raises(DuplicateParticipant):
        await join(rooms, "a", "host", "participant")
    await join(rooms, "a", "p1")
    with pytest.raises(RoomFull):
        await join(rooms, "a", "p2")
    for index in range(MAX_ROOMS - 1):
        await rooms.create_room(RoomOptions(f"more-{index}"))
    with pytest.raises(TooManyRooms):
        await rooms.create_room(RoomOptions("one-too-many"))
    # the refused did not take a seat
    assert rooms.seats("a") == RoomSeats("a", 1, has_host=True, participants=1)


async def test_leave_unless_connected_removes_only_the_unconnected(
    rooms: Rooms[Any], peers: PeerFactory
) -> None:
    await rooms.create_room(RoomOptions("a", max_participants=2))
    host = await join_peer(rooms, peers("host", code=1), "a", "host")
    waiting, _ = await join(rooms, "a", "never-answers")
    guest = await join_peer(rooms, peers("guest", code=2), "a", "participant")
    await guest.wait_video_from(host)

    assert await rooms.leave_unless_connected("a", "never-answers", "expired")
    await eventually(lambda: waiting.closed)
    assert rooms.seats("a").participants == 1
    # a connected member stays; unknown ids and rooms are no-ops
    assert not await rooms.leave_unless_connected("a", "guest", "expired")
    assert not await rooms.leave_unless_connected("a", "nobody", "expired")
    assert not await rooms.leave_unless_connected("nowhere", "guest", "expired")
    assert rooms.seats("a").participants == 1


async def test_two_members_see_each_other_and_it_shows_in_stats_and_events(
    rooms: Rooms[Any], peers: PeerFactory
) -> None:
    events: list[RoomEvent] = []
    unsubscribe = rooms.add_listener(events.append)
    await rooms.create_room(RoomOptions("a", max_participants=1))
    host = await join_peer(rooms, peers("host", code=1, tone=440), "a", "host")
    guest = await join_peer(rooms, peers("guest", code=2, tone=660), "a", "participant")
    for viewer, publisher in ((host, guest), (guest, host)):
        track = await viewer.wait_video_from(publisher)
        assert track.codes() == {publisher.code}
        await viewer.wait_audio_from(publisher)
    assert host.saw(Joined) and guest.saw(Joined)

    stats = await rooms.stats()
    assert [r.room_id for r in stats.rooms] == ["a"]
    assert {m.participant_id for m in stats.rooms[0].members} == {"host", "guest"}
    assert stats.participants == 2
    totals = await rooms.totals()
    assert totals.participants_joined == 2
    assert totals.packets_received["video"] > 0
    assert totals.packets_forwarded["video"] > 0

    joined = {e.participant_id for e in events if isinstance(e, ParticipantJoinedEvent)}
    assert joined == {"host", "guest"}
    published = {
        (e.participant_id, e.kind) for e in events if isinstance(e, TrackPublishedEvent)
    }
    assert published >= {(p, k) for p in ("host", "guest") for k in ("audio", "video")}

    # totals are monotonic: the guest's counters stay once it has left
    forwarded = totals.packets_forwarded["video"]
    assert guest.client.participant is not None
    await guest.client.participant.leave("left")
    await eventually(
        lambda: any(
            isinstance(e, ParticipantLeftEvent) and e.participant_id == "guest"
            for e in events
        )
    )
    after = await rooms.totals()
    assert after.participants_left == 1
    assert after.packets_forwarded["video"] >= forwarded
    assert (await rooms.stats()).participants == 1

    unsubscribe()
    await rooms.close_room("a")
    await asyncio.sleep(0)  # a pool's notice would arrive now, if it were sent
    assert not any(isinstance(e, RoomClosedEvent) for e in events)


async def test_capabilities(rooms: Rooms[Any]) -> None:
    """What differs is said, not guessed from the type."""
    assert rooms.config.limits.max_rooms == MAX_ROOMS
    in_process = not isinstance(rooms, WorkerPool)
    assert rooms.supports_client_offers is in_process
