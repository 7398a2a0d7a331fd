"""Joining, leaving, dying peers and isolation between rooms."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import weakref
from dataclasses import replace
from typing import Any

import pytest
from aioice import stun
from aiortc.rtp import RtcpPacket

from pysfu import (
    SFU,
    CodecInfo,
    DownTrack,
    Forwarder,
    ParticipantLeftEvent,
    RoomFull,
    SFUConfig,
)
from pysfu import _aiortc as rtc
from pysfu.forwarding.congestion import SlowestSubscriber
from pysfu.signalling import Leave, RoomClosed
from pysfu.stats import SubscriptionStats

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, eventually, ice_sockets
from ..peers import ParticipantLeft, PatternVideoTrack, Peer, PeerFactory


async def test_leave_ends_tracks_for_others_and_frees_everything(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    left: list[ParticipantLeftEvent] = []
    room.add_listener(
        lambda e: left.append(e) if isinstance(e, ParticipantLeftEvent) else None
    )
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await host.wait_video_from(guest)
    await host.wait_audio_from(guest)
    # weak references only: the test itself must not keep anything alive
    participant_ref = weakref.ref(room.members["guest"])
    pc_ref = weakref.ref(room.members["guest"].pc)
    forwarder_ref = weakref.ref(room.members["guest"].publications["guest/video"])

    assert guest.client is not None
    await guest.client.send(Leave())
    await guest.close()

    video, audio = (
        host.track_from("guest", "video"),
        host.track_from("guest", "audio"),
    )
    assert video is not None and audio is not None
    await asyncio.wait_for(video.ended.wait(), LIVENESS)
    await asyncio.wait_for(audio.ended.wait(), LIVENESS)
    await eventually(lambda: host.saw(ParticipantLeft), what="participant-left message")
    assert [e.participant_id for e in left] == ["guest"]
    assert "guest" not in room.members
    assert room.members["host"].subscriptions == {}
    # the host's connection was renegotiated: the guest's sections are inactive
    await eventually(
        lambda: host.pc.signalingState == "stable" and host.answers_sent >= 3
    )

    await assert_freed(participant_ref, pc_ref, forwarder_ref)


async def assert_freed(*refs: weakref.ref[object]) -> None:
    """The objects are garbage: nothing (task, callback, cache) holds them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS
    while loop.time() < deadline:  # aiortc finishes closing in background tasks
        gc.collect()
        if all(ref() is None for ref in refs):
            return
        await asyncio.sleep(0.1)
    assert [ref() for ref in refs] == [None] * len(refs)


class _Sink:
    def send_rtp(self, data: bytes | bytearray) -> bool:
        return True

    def send_rtcp(self, data: bytes) -> bool:
        return True


def test_closing_a_forwarder_tells_each_downtrack_owner_once() -> None:
    forwarder = Forwarder(
        track_id="p/audio",
        kind="audio",
        publisher_id="p",
        upstream=_Sink(),
        rtcp_ssrc=1,
    )
    forwarder.set_codecs([CodecInfo(111, "audio/opus", 48000, channels=2)], {})
    told: list[str] = []
    downtracks = []
    for name in ("a", "b"):
        downtrack = DownTrack(forwarder, _Sink(), ssrc=7, subscriber_id=name)
        downtrack.on_source_closed = lambda d: told.append(d.subscriber_id)
        forwarder.add_downtrack(downtrack)
        downtracks.append(downtrack)
    silent = DownTrack(forwarder, _Sink(), ssrc=8, subscriber_id="c")  # no owner
    forwarder.add_downtrack(silent)

    forwarder.close()
    forwarder.close()

    assert told == ["a", "b"]
    assert all(d.closed for d in [*downtracks, silent])
    assert forwarder.downtracks == []


async def test_a_subscription_is_retired_once_whoever_ends_it(
    sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    retired: list[SubscriptionStats] = []
    real = room.retire

    def count(stats: SubscriptionStats) -> None:
        retired.append(stats)
        real(stats)

    # a participant's own counters (subscriptions included) are retired with
    # it; room.retire is for a subscription that ends before its subscriber
    monkeypatch.setattr(room, "retire", count)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    other = await peers("other", code=3).join(room)
    await host.wait_video_from(guest)
    await other.wait_video_from(guest)

    assert retired == []
    # the guest leaves: its two tracks end for two subscribers each
    await room.members["guest"].leave()
    await guest.close()
    assert sorted(s.track_id for s in retired) == [
        "guest/audio",
        "guest/audio",
        "guest/video",
        "guest/video",
    ]
    # the room closes: what is still subscribed counts with its participant
    retired.clear()
    await room.close()
    assert retired == []


async def test_new_participant_can_join_after_one_left(peers: PeerFactory) -> None:
    # (reuse on, the default: the aiortc host gets new sections for the
    # newcomer's tracks, see test_reused_transceivers.py)
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    first = await peers("first", code=2).join(room)
    await first.wait_video_from(host)
    with pytest.raises(RoomFull):
        await peers("extra", code=4).join(room)
    await room.members["first"].leave()
    await first.close()
    second = await peers("second", code=3).join(room)
    await second.wait_video_from(host)
    await second.wait_audio_from(host)
    await host.wait_video_from(second)
    await host.wait_audio_from(second)
    assert room.members["host"].subscriptions.keys() == {"second/audio", "second/video"}
    await sfu.close()


async def test_host_leaving_closes_the_room(sfu: SFU, peers: PeerFactory) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await guest.wait_video_from(host)
    await room.members["host"].leave()
    await eventually(lambda: guest.saw(RoomClosed), what="room-closed message")
    assert room.closed and "r1" not in sfu.rooms
    assert room.members == {}


async def test_rooms_never_exchange_media(sfu: SFU, peers: PeerFactory) -> None:
    room_a, room_b = sfu.create_room("a"), sfu.create_room("b")
    a1 = await peers("a1", code=1, tone=300).join(room_a, "host")
    a2 = await peers("a2", code=2, tone=500).join(room_a)
    b1 = await peers("b1", code=3, tone=700).join(room_b, "host")
    b2 = await peers("b2", code=4, tone=900).join(room_b)
    peers = [a1, a2, b1, b2]
    pairs = [(a1, a2), (a2, a1), (b1, b2), (b2, b1)]
    for receiver, sender in pairs:
        await receiver.wait_video_from(sender, frames=30)
        await receiver.wait_audio_from(sender)
    for receiver, sender in pairs:
        assert set(receiver.received) == {
            f"{sender.name}/video",
            f"{sender.name}/audio",
        }
        assert receiver.track_from(sender.name, "video").codes() == {sender.code}
        audio = receiver.track_from(sender.name, "audio")
        assert abs(audio.frequency() - sender.audio.frequency) < 20
    for room in (room_a, room_b):
        for member in room.members.values():
            for forwarder in member.publications.values():
                assert {d.subscriber_id for d in forwarder.downtracks} <= set(
                    room.members
                )


def kill_sockets(peer: Peer) -> None:
    """Make a peer vanish like a killed process: its sockets close, no goodbye."""
    for protocol in ice_sockets(peer.pc):
        if protocol.transport is not None:
            protocol.transport.close()


async def test_a_subscriber_dying_mid_stream_does_not_interrupt_the_others(
    sfu: SFU,
    peers: PeerFactory,
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    doomed = await peers("doomed", code=2).join(room)
    steady = await peers("steady", code=3).join(room)
    await steady.wait_video_from(host)
    await doomed.wait_video_from(host)
    await host.wait_video_from(steady)
    doomed_refs = (
        weakref.ref(room.members["doomed"]),
        weakref.ref(room.members["doomed"].pc),
        weakref.ref(room.members["doomed"].publications["doomed/video"]),
    )
    kill_sockets(doomed)
    seen = steady.track_from("host", "video")
    seen_by_host = host.track_from("steady", "video")
    assert seen is not None and seen_by_host is not None
    before, before_host = len(seen.patterns), len(seen_by_host.patterns)
    await eventually(lambda: len(seen.patterns) > before + 60, what="frames to steady")
    await eventually(
        lambda: len(seen_by_host.patterns) > before_host + 60, what="frames to host"
    )
    forwarder = room.members["host"].publications["host/video"]
    assert all(d.stats.errors == 0 for d in forwarder.downtracks)
    # ICE consent checks notice the silence (~10 s by default): the vanished
    # peer is removed, the others are told and stop receiving its tracks
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    await eventually(lambda: "doomed" not in room.members, what="removal")
    removed_after = loop.time() - killed_at
    await eventually(
        lambda: any(m.participant_id == "doomed" for m in steady.saw(ParticipantLeft)),
        what="participant-left",
    )
    track = steady.track_from("doomed", "video")
    assert track is not None
    await asyncio.wait_for(track.ended.wait(), LIVENESS)
    assert set(room.members["host"].subscriptions) == {"steady/audio", "steady/video"}
    await assert_freed(*doomed_refs)
    print(f"vanished peer removed after {removed_after:.1f} s")


def answer_consent_late(peer: Peer, delay: float) -> None:
    """Make a peer answer ICE checks ``delay`` s late, as an overloaded one does."""
    loop = asyncio.get_running_loop()
    for protocol in ice_sockets(peer.pc):
        send_stun = protocol.send_stun

        def late(message: Any, addr: Any, send_stun: Any = send_stun) -> None:
            if message.message_class == stun.Class.RESPONSE:
                loop.call_later(delay, send_stun, message, addr)
            else:
                send_stun(message, addr)

        protocol.send_stun = late


async def test_a_slow_peer_keeps_its_seat_a_silent_one_loses_it(
    peers: PeerFactory,
) -> None:
    # consent checks every 1 s, a peer is gone after 5 s without any answer:
    # room for this process (server and three peers) to stall now and then
    config = SFUConfig(ice=replace(LOOPBACK, consent_interval=1.0, consent_failures=5))
    sfu = SFU(config)
    try:
        room = sfu.create_room("r1", max_participants=2)
        host = await peers("host", code=1).join(room, "host")
        slow = await peers("slow", code=2).join(room)
        silent = await peers("silent", code=3).join(room)
        await slow.wait_video_from(host)
        await silent.wait_video_from(host)
        # answers 0.8 s late: after the first check's 0.5 s timeout, within
        # its retransmissions
        answer_consent_late(slow, 0.8)
        kill_sockets(silent)
        await eventually(lambda: "silent" not in room.members, what="removal")
        seen = slow.track_from("host", "video")
        assert seen is not None
        before = len(seen.patterns)
        await asyncio.sleep(10)  # twice the consent deadline
        assert "slow" in room.members
        await eventually(lambda: len(seen.patterns) > before + 60, what="frames")
    finally:
        await sfu.close()


async def test_ice_restart_requests_do_not_keep_a_silent_peer(
    peers: PeerFactory,
) -> None:
    # A restart request gives a fresh consent deadline (a client changing
    # networks is alive), but only once until a check is answered again: a
    # client whose path stopped answering cannot keep it by asking again.
    config = SFUConfig(ice=replace(LOOPBACK, consent_interval=1.0, consent_failures=3))
    sfu = SFU(config)
    try:
        room = sfu.create_room("r1")
        host = await peers("host", code=1).join(room, "host")
        silent = await peers("silent", code=3).join(room)
        await silent.wait_video_from(host)
        member = room.members["silent"]
        kill_sockets(silent)

        async def keep_asking() -> None:
            # through the seam, as every restart request ends up (an offer
            # the dead peer cannot answer would hold the next ones back)
            while True:
                rtc.restart_ice(member.pc)
                await asyncio.sleep(0.5)

        asking = asyncio.get_running_loop().create_task(keep_asking())
        try:
            await eventually(
                lambda: "silent" not in room.members,
                what=f"removal ({rtc.ice_restarts(member.pc)} restarts)",
            )
        finally:
            asking.cancel()
        assert rtc.ice_restarts(member.pc) > 3  # asked all along
    finally:
        await sfu.close()


async def test_a_peer_closing_its_connection_is_removed_and_others_told(
    sfu: SFU,
    peers: PeerFactory,
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await host.wait_video_from(guest)
    await guest.pc.close()  # DTLS close_notify, but no signalling goodbye
    await eventually(lambda: "guest" not in room.members, what="removal")
    await eventually(lambda: host.saw(ParticipantLeft), what="participant-left message")
    await asyncio.wait_for(host.track_from("guest", "video").ended.wait(), LIVENESS)


async def test_lost_packets_are_recovered_from_the_sfu_history(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await guest.wait_video_from(host)
    downtrack = room.members["guest"].subscriptions["host/video"].downtrack
    output = downtrack._output
    dropped: set[int] = set()
    real_send = output.send_rewritten

    def lossy_send(
        data: bytes | bytearray, pt: int, seq: int, ts: int, ssrc: int
    ) -> bool:
        if seq % 7 == 0 and seq not in dropped:  # lose each 7th packet once
            dropped.add(seq)
            return True
        return real_send(data, pt, seq, ts, ssrc)

    # a copy of the output for this downtrack only (audio shares the original)
    downtrack._output = type(output).__new__(type(output))
    downtrack._output.__dict__.update(output.__dict__)
    downtrack._output.send_rewritten = lossy_send  # type: ignore[method-assign]
    track = guest.track_from("host", "video")
    assert track is not None
    start = len(track.patterns)
    await eventually(lambda: len(track.patterns) > start + 90, what="frames under loss")
    counters = [n for _, n in track.patterns[start + 5 :]]
    gaps = [b - a for a, b in itertools.pairwise(counters) if b - a != 1]
    assert len(dropped) >= 10
    assert downtrack.stats.nacks_received > 0
    assert downtrack.stats.retransmitted >= len(dropped) - 3
    assert gaps == [], f"frames lost despite retransmission: {gaps}"


async def test_a_replaced_track_reaches_subscribers_on_the_same_stream(
    sfu: SFU,
    peers: PeerFactory,
) -> None:
    # aiortc's VP8 encoder is re-created on a bitrate change and then refuses
    # frames whose pts is below its first one, which replaceTrack's new track
    # (pts from 0) sends: the host's sender would stop. Its first bitrate
    # change comes with pysfu's first REMB; the start value would make that
    # one arrive before the replacement, so this test, about pysfu's side,
    # leaves it out (an aiortc limitation, whatever pysfu sends).
    sfu.config = replace(
        sfu.config,
        forwarding=replace(
            sfu.config.forwarding, remb_policy=SlowestSubscriber(start_at_cap=False)
        ),
    )
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    sender = next(s for s in host.pc.getSenders() if s.track is host.video)
    sender.replaceTrack(PatternVideoTrack(code=7))  # restarts timestamps at 0
    await eventually(
        lambda: sum(1 for c, _ in track.patterns if c == 7) >= 30, what="new source"
    )
    assert set(guest.received) == {"host/video", "host/audio"}


async def test_subscribers_get_sender_reports_for_sync(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    reports: list[Any] = []
    received_at: list[float] = []  # wall-clock time each report arrived
    await guest.wait_video_from(host)
    transport = guest.pc.getTransceivers()[0].receiver.transport
    real = transport._handle_rtcp_data

    async def spy(data: bytes) -> None:
        for packet in RtcpPacket.parse(data):
            if type(packet).__name__ == "RtcpSrPacket":
                reports.append(packet)
                received_at.append(time.time())
        await real(data)

    transport._handle_rtcp_data = spy
    ssrcs = {
        d.ssrc: d.kind
        for d in (s.downtrack for s in room.members["guest"].subscriptions.values())
    }
    await eventually(lambda: {r.ssrc for r in reports} >= set(ssrcs), what="SRs")
    for report, arrived in zip(reports, received_at, strict=True):
        ntp_seconds = report.sender_info.ntp_timestamp / (1 << 32) - 2208988800
        assert abs(ntp_seconds - arrived) < 10  # the wall clock when it was sent
