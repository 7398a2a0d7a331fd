"""Soak: repeated joins, leaves and rooms must not leave anything behind.

A shorter version of ``benchmarks/soak.py``: after a few warm-up cycles the
process's asyncio tasks, open file descriptors, threads, live peer connections
and live participants are taken as the baseline; after many more cycles they
must be back to it (within a tiny slack for aiortc's background closing), and
memory may only grow a little.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import types
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from pysfu import SFU, Participant, Role, Room
from pysfu.admission import Admission
from pysfu.signalling import ClientMessage, Leave, ServerMessage

from ..helpers import LIVENESS, eventually
from ..peers import Peer, like_a_browser

JOIN_LEAVE_WARMUP, JOIN_LEAVE_CYCLES = 5, 35
ROOM_WARMUP, ROOM_CYCLES = 3, 15
#: Allowed growth over the measured cycles. Tasks, fds and threads get a
#: little slack for aiortc closing transports in background tasks and for the
#: default executor starting a thread late; objects get none.
SLACK = {"tasks": 2, "fds": 2, "threads": 2, "pcs": 0, "participants": 0}
#: Memory is measured but this is no benchmark: the bound is loose.
RSS_GROWTH_MB = 40
PAGE = os.sysconf("SC_PAGE_SIZE")


class SoakPeer(Peer):
    """A client peer that bundles all media on one transport.

    aiortc's default bundle policy (``balanced``) mishandles a first offer with
    two m-lines of one kind, which is what someone joining a room whose host
    already publishes gets: the second video m-line stays on a transport aiortc
    discards, so the client never sends its video (aiortc/aiortc#1414).

    Its answers carry a browser's origin line: pysfu gives an aiortc client a
    new section for every track it receives (aiortc cannot play a reused
    one), so its connection, and the server's tasks for it, grow with each
    guest by design; the soak checks the path browsers take, where sections
    are reused and nothing may grow.
    """

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name, code, answer_filter=like_a_browser)
        self.pc = RTCPeerConnection(
            RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.on("track", self._on_track)


class Clients:
    """Makes client peers and closes them; keeps only the ones still open."""

    def __init__(self) -> None:
        self.live: list[SoakPeer] = []

    def __call__(self, name: str, code: int) -> SoakPeer:
        self.live.append(SoakPeer(name, code))
        return self.live[-1]

    async def close(self, *peers: Peer) -> None:
        for peer in peers:
            await peer.close()
            self.live = [p for p in self.live if p is not peer]


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    yield made
    await made.close(*list(made.live))


# ----------------------------------------------------------------------------
# measuring


@dataclass
class Usage:
    tasks: int
    fds: int
    threads: int
    pcs: int
    participants: int
    rss_mb: float

    def growth_over(self, baseline: Usage) -> dict[str, int]:
        """Counts that grew beyond their slack since ``baseline``."""
        now, before = asdict(self), asdict(baseline)
        return {
            name: now[name] - before[name]
            for name, slack in SLACK.items()
            if now[name] - before[name] > slack
        }


def usage() -> Usage:
    gc.collect()
    pcs = participants = 0
    for obj in gc.get_objects():
        if isinstance(obj, RTCPeerConnection):
            pcs += 1
        elif isinstance(obj, Participant):
            participants += 1
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * PAGE
    return Usage(
        tasks=len(asyncio.all_tasks()),
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        pcs=pcs,
        participants=participants,
        rss_mb=rss / 2**20,
    )


async def settled(baseline: Usage | None = None, timeout: float = LIVENESS) -> Usage:
    """Usage once aiortc's background closing is done.

    With a ``baseline``: as soon as the counts are back within their slack of
    it. Without: once the counts stop changing. Whatever it is after
    ``timeout`` seconds otherwise.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    previous: dict[str, float] | None = None
    while True:
        await asyncio.sleep(0.1)
        now = usage()
        counts = {k: v for k, v in asdict(now).items() if k != "rss_mb"}
        if baseline is not None and not now.growth_over(baseline):
            return now
        if baseline is None and counts == previous:
            return now
        if loop.time() > deadline:
            return now
        previous = counts


def describe(obj: object) -> str:
    if isinstance(obj, dict):
        return f"dict{list(obj)[:5]}"
    if isinstance(obj, list | tuple | set):
        return f"{type(obj).__name__}[{len(obj)}]"
    if isinstance(obj, types.FunctionType | types.MethodType):
        return f"{type(obj).__name__} {obj.__qualname__}"
    return f"{type(obj).__name__} {repr(obj)[:100]}"


#: Where a chain of referrers ends: things that live on their own.
ROOTS = (asyncio.Handle, asyncio.Task, types.ModuleType, type)


def referrer_chain(ref: weakref.ref[Any], max_depth: int = 10) -> str:
    """The shortest path of referrers from ``ref()`` to a root, for a failure
    message (or the longest one walked, if none reaches a root)."""
    target = ref()
    if target is None:
        return "(freed meanwhile)"
    gc.collect()
    paths: list[list[Any]] = [[target]]
    seen = {id(target), id(paths)}
    longest = paths[0]
    for _ in range(max_depth):
        next_paths = []
        seen.add(id(next_paths))
        for path in paths:
            seen.add(id(path))
            referrers = gc.get_referrers(path[-1])
            seen.add(id(referrers))
            for referrer in referrers:
                if id(referrer) in seen or isinstance(referrer, types.FrameType):
                    continue
                # the running test itself (its locals) is not what holds it
                if isinstance(referrer, types.CoroutineType) and referrer.cr_running:
                    continue
                seen.add(id(referrer))
                found = [*path, referrer]
                if isinstance(referrer, ROOTS):
                    return " <- ".join(describe(o) for o in found)
                next_paths.append(found)
        if not next_paths:
            break
        paths = next_paths
        longest = paths[0]
    return " <- ".join(describe(o) for o in longest) + " (no root found)"


def leftovers(cls: type, keep: Callable[[Any], bool]) -> str:
    """Referrer chains of live ``cls`` instances that ``keep`` does not expect."""
    found = [
        weakref.ref(o) for o in gc.get_objects() if isinstance(o, cls) and not keep(o)
    ]
    return "\n".join(referrer_chain(ref) for ref in found[:3])


# ----------------------------------------------------------------------------
# cycles


def forwarded(room: Room, subscriber_id: str, track_id: str) -> bool:
    member = room.members.get(subscriber_id)
    subscription = member.subscriptions.get(track_id) if member else None
    return bool(subscription and subscription.downtrack.stats.packets_sent)


async def join_and_leave(room: Room, host: Peer, clients: Clients, n: int) -> None:
    """A participant joins, media flows both ways through the SFU, it leaves."""
    guest = await clients(f"guest-{n}", code=2).join(room)
    await guest.wait_video_from(host, frames=1)
    for kind in ("audio", "video"):
        await eventually(
            lambda kind=kind: forwarded(room, "host", f"guest-{n}/{kind}"),
            what=f"guest-{n}'s {kind} forwarded to the host",
        )
    assert guest.client is not None
    await guest.client.send(Leave())
    await clients.close(guest)
    assert f"guest-{n}" not in room.members
    host.messages.clear()  # the test client's own history is not the SFU's


async def room_lifetime(sfu: SFU, clients: Clients, n: int) -> None:
    """A room is created, host and guest see each other, the host leaves."""
    room = sfu.create_room(f"room-{n}")
    host = await clients("host", code=1).join(room, "host")
    guest = await clients("guest", code=2).join(room)
    await guest.wait_video_from(host, frames=1)
    await host.wait_video_from(guest, frames=1)
    assert host.client is not None
    await host.client.send(Leave())
    await clients.close(guest, host)
    assert room.closed and room.id not in sfu.rooms


# ----------------------------------------------------------------------------
# tests


async def test_join_leave_cycles_leave_nothing_behind(
    sfu: SFU, clients: Clients
) -> None:
    room = sfu.create_room("soak", max_participants=1)
    host = await clients("host", code=1).join(room, "host")
    for n in range(JOIN_LEAVE_WARMUP):
        await join_and_leave(room, host, clients, n)
    baseline = await settled()
    for n in range(JOIN_LEAVE_WARMUP, JOIN_LEAVE_WARMUP + JOIN_LEAVE_CYCLES):
        await join_and_leave(room, host, clients, n)
    after = await settled(baseline)

    grown = after.growth_over(baseline)
    assert not grown, (
        f"grew over {JOIN_LEAVE_CYCLES} join/leave cycles: {grown}\n"
        f"baseline {baseline}\nafter    {after}\n"
        + leftovers(Participant, lambda p: p.id == "host")
    )
    assert after.rss_mb - baseline.rss_mb < RSS_GROWTH_MB, (baseline, after)
    assert list(room.members) == ["host"]
    assert room.members["host"].subscriptions == {}


async def test_room_cycles_leave_nothing_behind(sfu: SFU, clients: Clients) -> None:
    for n in range(ROOM_WARMUP):
        await room_lifetime(sfu, clients, n)
    baseline = await settled()
    for n in range(ROOM_WARMUP, ROOM_WARMUP + ROOM_CYCLES):
        await room_lifetime(sfu, clients, n)
    after = await settled(baseline)

    grown = after.growth_over(baseline)
    assert not grown, (
        f"grew over {ROOM_CYCLES} room cycles: {grown}\n"
        f"baseline {baseline}\nafter    {after}\n"
        + leftovers(Participant, lambda p: False)
    )
    assert after.rss_mb - baseline.rss_mb < RSS_GROWTH_MB, (baseline, after)
    assert sfu.rooms == {}


class AdmittedClient:
    """The client end of a join through :class:`Admission` (in memory)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.participant: Participant | None = None

    async def deliver(self, message: ServerMessage) -> None:
        self.inbox.put_nowait(message)

    async def send(self, message: ClientMessage) -> None:
        assert self.participant is not None
        await self.participant.handle(message)


async def join_admitted(
    admission: Admission, room: Room, peer: Peer, role: Role
) -> Peer:
    grant = admission.admit(room.id, role, host_authorized=role is Role.HOST)
    peer.name = grant.participant_id  # track ids are "<participant id>/<kind>"
    client = AdmittedClient()
    client.participant = await admission.join(grant.participant_id, client.deliver)
    return peer.attach(client)


async def test_an_admitted_participant_who_left_is_freed(
    sfu: SFU, clients: Clients
) -> None:
    room = sfu.create_room("r1")
    admission = Admission(sfu)  # the default credential_ttl, as ws_sfu uses
    host = await join_admitted(admission, room, clients("host", 1), Role.HOST)
    guest = await join_admitted(admission, room, clients("guest", 2), Role.PARTICIPANT)
    await guest.wait_video_from(host, frames=1)
    participant_ref = weakref.ref(room.members[guest.name])
    pc_ref = weakref.ref(room.members[guest.name].pc)
    assert guest.client is not None
    await guest.client.send(Leave())
    await clients.close(guest)
    assert guest.name not in room.members

    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS
    while loop.time() < deadline:  # aiortc finishes closing in background tasks
        gc.collect()
        if participant_ref() is None and pc_ref() is None:
            break
        await asyncio.sleep(0.1)
    chain = referrer_chain(participant_ref)
    assert participant_ref() is None, f"the participant is still alive: {chain}"
    assert pc_ref() is None
