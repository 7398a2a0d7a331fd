"""The stats API and the limits, as a user of the library sees them."""

from __future__ import annotations

import pytest

from pysfu import SFU, IceConfig, LimitsConfig, SFUConfig, TooManyPending, TooManyRooms
from pysfu.admission import Admission

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import PeerFactory


async def test_stats_describe_what_flows(sfu: SFU, peers: PeerFactory) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await guest.wait_video_from(host, frames=30)
    await eventually(
        lambda: all(
            s.round_trip_time is not None for s in room.stats().members[1].subscribed
        ),
        what="RTT from the subscriber's receiver reports",
    )
    stats = room.stats()
    host_stats = next(m for m in stats.members if m.participant_id == "host")
    assert host_stats.connection_state == "connected"
    video = next(t for t in host_stats.published if t.kind == "video")
    assert (video.codec, video.subscribers) == ("video/VP8", 1)
    assert video.packets_received > 30 and video.keyframe_requests_sent >= 1
    guest_stats = next(m for m in stats.members if m.participant_id == "guest")
    received = next(s for s in guest_stats.subscribed if s.track_id == "host/video")
    assert received.publisher_id == "host" and received.packets_sent > 30
    # seconds (a few ms on loopback; a busy machine adds its stalls)
    assert 0 <= received.round_trip_time < 10  # type: ignore[operator]
    assert sfu.stats().packets_forwarded >= received.packets_sent
    assert sfu.stats().participants == 2


async def test_room_and_pending_limits() -> None:
    sfu = SFU(SFUConfig(ice=LOOPBACK, limits=LimitsConfig(max_rooms=2, max_pending=1)))
    sfu.create_room("a", max_participants=5)
    sfu.create_room("b")
    with pytest.raises(TooManyRooms):
        sfu.create_room("c")
    admission = Admission(sfu)
    admission.admit("a")
    with pytest.raises(TooManyPending):
        admission.admit("a")
    await sfu.close()
    assert sfu.create_room("c")  # closed rooms no longer count


async def test_subscribers_per_track_are_capped(peers: PeerFactory) -> None:
    limits = LimitsConfig(max_subscribers_per_track=1)
    sfu = SFU(SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",)), limits=limits))
    room = sfu.create_room("r1", max_participants=2)
    try:
        host = await peers("host", code=1).join(room, "host")
        first = await peers("first", code=2).join(room)
        second = await peers("second", code=3).join(room)
        await first.wait_video_from(host)
        await host.wait_video_from(first)
        await eventually(lambda: "second/video" in room.members["host"].subscriptions)
        # every track already has its one subscriber when the second arrives
        assert room.members["second"].subscriptions == {}
        assert second.received == {}
    finally:
        await sfu.close()
