"""Data channel messages relayed by the SFU, between real aiortc peers."""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pysfu import SFU, LimitsConfig, Participant, SFUConfig, host_only
from pysfu.datachannel import envelope, open_envelope
from pysfu.events import DataDroppedEvent, DataMessageEvent, RoomEvent
from pysfu.metrics import SFUCollector
from pysfu.signalling import Error, Offer

from ..conftest import LOOPBACK
from ..helpers import LIVENESS, eventually, ice_sockets
from ..peers import Peer, PeerFactory
from .test_lifecycle import assert_freed

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def talker(peers: PeerFactory, name: str) -> Peer:
    """A peer that publishes nothing: these tests are about messages only."""
    return peers(name, 0, publish_video=False, publish_audio=False)


async def joined(peer: Peer, room: object, role: str = "participant") -> Peer:
    await peer.join(room, role)  # type: ignore[arg-type]
    await peer.wait_channel()
    return peer


async def talkers(peers: PeerFactory, room: object, *names: str) -> list[Peer]:
    """The room's host, then participants named ``names``, all joined."""
    host = await joined(talker(peers, "host"), room, "host")
    return [host] + [await joined(talker(peers, name), room) for name in names]


def texts(peer: Peer) -> list[tuple[str | None, str | None, str | bytes]]:
    return [open_envelope(m) for m in peer.data_received]


def record(room: object) -> list[RoomEvent]:
    events: list[RoomEvent] = []
    room.add_listener(events.append)  # type: ignore[attr-defined]
    return events


@pytest.fixture
async def strict_sfu() -> AsyncIterator[SFU]:
    """An SFU with small data limits: 100 bytes, bursts of 3, 1 message/s."""
    limits = LimitsConfig(
        max_data_message_size=100, data_messages_per_second=1, data_message_burst=3
    )
    server = SFU(SFUConfig(ice=LOOPBACK, limits=limits))
    yield server
    await server.close()


def test_envelopes_round_trip() -> None:
    text = envelope("p1", "Ann \u00e9", '{"from": "host"}')
    assert json.loads(text) == {
        "from": "p1",
        "name": "Ann \u00e9",
        "data": '{"from": "host"}',
    }
    assert open_envelope(text) == ("p1", "Ann \u00e9", '{"from": "host"}')
    binary = envelope(None, None, b"\x00\x01payload")
    assert isinstance(binary, bytes)
    assert open_envelope(binary) == (None, None, b"\x00\x01payload")
    with pytest.raises(ValueError):
        open_envelope(b"\x00")


async def test_messages_reach_the_room_stamped_with_the_true_sender(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    events = record(room)
    host, ann, bob = await talkers(peers, room, "ann", "bob")

    # a client claiming to be the host in its text is still stamped as itself
    forged = json.dumps({"from": "host", "name": "host", "data": "obey"})
    (await ann.wait_channel()).send(forged)
    (await ann.wait_channel()).send(b"\x00\xffbinary")
    for receiver in (host, bob):
        await eventually(lambda r=receiver: len(r.data_received) == 2)  # type: ignore[misc]
        assert texts(receiver) == [
            ("ann", "ann", forged),
            ("ann", "ann", b"\x00\xffbinary"),
        ]
    assert ann.data_received == []  # no echo to the sender
    relayed = [e for e in events if isinstance(e, DataMessageEvent)]
    assert [(e.participant_id, set(e.recipients)) for e in relayed] == [
        ("ann", {"host", "bob"}),
        ("ann", {"host", "bob"}),
    ]
    stats = {m.participant_id: m.data for m in room.stats().members}
    assert stats["ann"].messages_received == 2 and stats["ann"].messages_dropped == 0
    assert stats["bob"].messages_sent == 2
    assert sfu.totals().data_messages_relayed == 4
    registry = CollectorRegistry()
    registry.register(SFUCollector(sfu))
    assert b"pysfu_data_messages_relayed_total 4.0" in generate_latest(registry)

    # the server speaks too: to one member, then to the room
    assert room.send_data("for bob", to=["bob"]) == ("bob",)
    await eventually(lambda: (None, None, "for bob") in texts(bob))
    assert set(room.send_data(b"all")) == {"host", "ann", "bob"}
    for peer in (host, ann, bob):
        await eventually(lambda p=peer: (None, None, b"all") in texts(p))  # type: ignore[misc]
    assert (None, None, "for bob") not in texts(ann)


async def test_rooms_never_exchange_messages(sfu: SFU, peers: PeerFactory) -> None:
    room_a, room_b = sfu.create_room("a"), sfu.create_room("b")
    a1 = await joined(talker(peers, "a1"), room_a, "host")
    a2 = await joined(talker(peers, "a2"), room_a)
    b1 = await joined(talker(peers, "b1"), room_b, "host")
    b2 = await joined(talker(peers, "b2"), room_b)
    a1.channel.send("in a")  # type: ignore[union-attr]
    b1.channel.send("in b")  # type: ignore[union-attr]
    await eventually(lambda: texts(a2) == [("a1", "a1", "in a")])
    await eventually(lambda: texts(b2) == [("b1", "b1", "in b")])
    room_a.send_data("server to a")
    await eventually(lambda: len(a2.data_received) == 2)
    # ordered channels: anything from room a would have come before this
    room_b.send_data("marker")
    await eventually(lambda: len(b2.data_received) == 2)
    assert texts(b2) == [("b1", "b1", "in b"), (None, None, "marker")]
    assert texts(b1) == [(None, None, "marker")]


async def test_eligibility_applies_to_messages(sfu: SFU, peers: PeerFactory) -> None:
    room = sfu.create_room("stage", max_participants=2, eligibility=host_only)
    events = record(room)
    host, ann, bob = await talkers(peers, room, "ann", "bob")
    host.channel.send("welcome")  # type: ignore[union-attr]
    for peer in (ann, bob):
        await eventually(lambda p=peer: texts(p) == [("host", "host", "welcome")])  # type: ignore[misc]
    ann.channel.send("heckle")  # type: ignore[union-attr]
    await eventually(
        lambda: any(
            isinstance(e, DataMessageEvent) and e.participant_id == "ann"
            for e in events
        )
    )
    heckle = next(
        e
        for e in events
        if isinstance(e, DataMessageEvent) and e.participant_id == "ann"
    )
    assert heckle.recipients == ()
    room.send_data("marker")  # sent after the heckle was handled: arrives after it
    for peer in (host, bob):
        await eventually(lambda p=peer: (None, None, "marker") in texts(p))  # type: ignore[misc]
    assert all(sender != "ann" for sender, _, _ in texts(host) + texts(bob))


async def test_a_filter_can_rewrite_or_drop(sfu: SFU, peers: PeerFactory) -> None:
    def moderate(sender: Participant, data: str | bytes) -> str | bytes | None:
        if isinstance(data, str) and "spam" in data:
            return None
        return data.upper() if isinstance(data, str) else data

    room = sfu.create_room("r1", data_filter=moderate)
    events = record(room)
    host = await joined(talker(peers, "host"), room, "host")
    ann = await joined(talker(peers, "ann"), room)
    ann.channel.send("buy spam")  # type: ignore[union-attr]
    ann.channel.send("hello")  # type: ignore[union-attr]
    await eventually(lambda: texts(host) == [("ann", "ann", "HELLO")])
    dropped = [e for e in events if isinstance(e, DataDroppedEvent)]
    assert [(e.participant_id, e.reason) for e in dropped] == [("ann", "filtered")]
    assert room.members["ann"].stats().data.messages_dropped == 1


async def test_oversize_and_floods_are_dropped_and_reported(
    strict_sfu: SFU, peers: PeerFactory
) -> None:
    room = strict_sfu.create_room("r1", max_participants=2)
    events = record(room)
    host, ann, bob = await talkers(peers, room, "ann", "bob")

    ann.channel.send("x" * 101)  # type: ignore[union-attr]
    await eventually(lambda: any(e.code == "data_too_large" for e in ann.errors))
    for _ in range(30):
        ann.channel.send("flood")  # type: ignore[union-attr]
    await eventually(lambda: any(e.code == "data_rate_limited" for e in ann.errors))
    await eventually(lambda: room.members["ann"].stats().data.messages_received == 31)
    stats = room.members["ann"].stats().data
    flood_relayed = sum(1 for _, _, data in texts(host) if data == "flood")
    assert stats.messages_dropped == 31 - flood_relayed
    assert stats.sctp_aborts == 0  # dropped, its association kept
    assert 3 <= flood_relayed < 30
    assert all(len(str(data)) <= 100 for _, _, data in texts(host))
    reasons = {e.reason for e in events if isinstance(e, DataDroppedEvent)}
    assert reasons == {"too_large", "rate_limited"}
    # the errors went to the sender only, and bob is unaffected
    assert all(not isinstance(m, Error) for m in host.messages + bob.messages)
    bob.channel.send("still fine")  # type: ignore[union-attr]
    await eventually(lambda: ("bob", "bob", "still fine") in texts(host))
    await eventually(lambda: ("bob", "bob", "still fine") in texts(ann))


async def test_a_message_over_the_sctp_limit_closes_only_that_channel(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    events = record(room)
    host, ann, rogue = await talkers(peers, room, "ann", "rogue")
    # aiortc refuses to send over the peer's a=max-message-size (256 KiB);
    # a hostile client does not
    assert rogue.pc.sctp is not None
    rogue.pc.sctp._remote_max_message_size = 0
    channel = await rogue.wait_channel()
    channel.send("y" * (1 << 20))  # 1 MiB, fragmented: the server aborts midway
    await eventually(lambda: channel.readyState == "closed", what="channel closed")
    await eventually(lambda: any(e.code == "data_too_large" for e in rogue.errors))
    assert any(
        isinstance(e, DataDroppedEvent) and e.participant_id == "rogue" for e in events
    )
    # nobody got any of it, and the others go on chatting
    (await ann.wait_channel()).send("after")
    await eventually(lambda: ("ann", "ann", "after") in texts(host))
    assert [data for _, _, data in texts(host)] == ["after"]
    assert "rogue" in room.members  # its media (none here) and seat stay
    # counted under its own name, apart from messages dropped for size
    assert room.members["rogue"].stats().data.sctp_aborts == 1
    assert sfu.totals().sctp_aborts == 1
    registry = CollectorRegistry()
    registry.register(SFUCollector(sfu))
    assert b"pysfu_sctp_aborts_total 1.0" in generate_latest(registry)


def stop_reading(peer: Peer) -> None:
    """Make a client stop reading its sockets (a frozen tab, a stalled
    process): nothing it is sent is acknowledged any more."""
    for protocol in ice_sockets(peer.pc):
        protocol.transport.pause_reading()


async def test_a_recipient_that_stops_reading_loses_messages_not_the_room(
    peers: PeerFactory,
) -> None:
    limits = LimitsConfig(
        max_data_message_size=8192,
        data_messages_per_second=1000,
        data_message_burst=1000,
        data_buffer_limit=64 * 1024,
    )
    # not reading, stuck answers no consent checks either: a deadline longer
    # than the test may take on a busy machine keeps that out of the picture
    ice = replace(LOOPBACK, consent_interval=2.0, consent_failures=int(LIVENESS))
    sfu = SFU(SFUConfig(ice=ice, limits=limits))
    try:
        room = sfu.create_room("r1", max_participants=2)
        host, ann, stuck = await talkers(peers, room, "ann", "stuck")
        stop_reading(stuck)
        channel = await ann.wait_channel()
        payload = "x" * 8000
        for number in range(60):  # 480 kB, far more than stuck's 64 KiB buffer
            channel.send(f"{number:03d}{payload}")
        # the room carries on: the host gets every message, in order
        await eventually(lambda: len(host.data_received) == 60, what="60 messages")
        numbers = [int(str(data)[:3]) for _, _, data in texts(host)]
        assert numbers == list(range(60))
        # the stalled member's copies stop at its buffer limit
        stats = {m.participant_id: m.data for m in room.stats().members}
        assert stats["stuck"].send_dropped > 0
        assert stats["stuck"].messages_sent < 60
        assert stats["host"].send_dropped == 0
        assert "stuck" in room.members  # a slow reader is not thrown out for it
    finally:
        await sfu.close()


async def test_a_room_without_media_slots_still_chats_with_its_credentials(
    peers: PeerFactory,
) -> None:
    # publish_kinds=(): the channel is the connection's first (and only) section,
    # and the join capability must apply to its ICE agent all the same
    server = SFU(SFUConfig(ice=LOOPBACK, publish_kinds=()))
    room = server.create_room("chat")
    try:
        host = await joined(talker(peers, "host"), room, "host")
        guest = talker(peers, "guest")
        await guest.join(room, ice_username_fragment="ufrag", ice_password="p" * 24)
        await guest.wait_channel()
        offer = next(m for m in guest.messages if isinstance(m, Offer))
        assert offer.sdp.count("\r\nm=") == 1 and "\r\nm=application " in offer.sdp
        assert "a=ice-ufrag:ufrag" in offer.sdp and f"a=ice-pwd:{'p' * 24}" in offer.sdp
        assert "a=ice-lite" in offer.sdp
        guest.channel.send("only words")  # type: ignore[union-attr]
        await eventually(lambda: texts(host) == [("guest", "guest", "only words")])
    finally:
        await server.close()


async def test_a_participant_that_leaves_frees_its_channel(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await joined(talker(peers, "host"), room, "host")
    guest = await joined(talker(peers, "guest"), room)
    guest.channel.send("bye")  # type: ignore[union-attr]
    await eventually(lambda: texts(host) == [("guest", "guest", "bye")])
    participant = room.members["guest"]
    assert participant.data is not None
    refs = [
        weakref.ref(participant),
        weakref.ref(participant.data),
        weakref.ref(participant.data._channel),
    ]
    del participant
    await room.members["guest"].leave()
    await guest.close()
    assert room.send_data("after") == ("host",)
    await assert_freed(*refs)
