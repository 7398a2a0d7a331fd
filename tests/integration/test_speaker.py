"""Active-speaker detection: the level parser, the detector, and end to end."""

from __future__ import annotations

import struct

import pytest

from pysfu import SFU, host_only
from pysfu.config import SpeakerConfig
from pysfu.events import ActiveSpeakerChangedEvent, RoomEvent, SpeakingChangedEvent
from pysfu.rtp.extensions import audio_level
from pysfu.signalling import Speaking
from pysfu.speaker import SpeakerDetector

from ..helpers import eventually
from ..peers import ParticipantJoined, PeerFactory

# -- the RFC 6464 level in raw RTP ---------------------------------------------------


def rtp_with(
    extensions: bytes, profile: int = 0xBEDE, payload: bytes = b"\xaa"
) -> bytes:
    """An RTP packet with the given extension elements (padded to 32 bits)."""
    extensions += b"\x00" * (-len(extensions) % 4)
    header = struct.pack("!BBHII", 0x90, 111, 1, 1234, 0xDEADBEEF)
    block = struct.pack("!HH", profile, len(extensions) // 4) + extensions
    return header + block + payload


def test_level_from_one_byte_extensions() -> None:
    # mid (id 1, "0") first, then the level (id 3): voice flag set, 42 -dBov
    packet = rtp_with(b"\x10" + b"0" + b"\x30" + bytes([0x80 | 42]))
    assert audio_level(packet, 3) == -42
    assert audio_level(packet, 5) is None  # not negotiated under that id
    silent = rtp_with(b"\x20" + bytes([127]))
    assert audio_level(silent, 2) == -127


def test_level_from_two_byte_extensions_and_padding() -> None:
    packet = rtp_with(b"\x00\x00" + b"\x07\x01" + bytes([20]), profile=0x1000)
    assert audio_level(packet, 7) == -20


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x90\x6f",  # shorter than a header
        struct.pack("!BBHII", 0x80, 111, 1, 0, 1),  # no extension
        # an element running past the end of the block (into the payload)
        struct.pack("!BBHII", 0x90, 111, 1, 0, 1)
        + b"\xbe\xde\x00\x01\x00\x00\x00\x31\xaa\xbb",
        struct.pack("!BBHII", 0x90, 111, 1, 0, 1) + b"\xbe\xde\x00\x09\x30",  # lies
        rtp_with(b"\xf0\x00\x30\x05"),  # id 15 ends the block
    ],
)
def test_malformed_packets_have_no_level(packet: bytes) -> None:
    assert audio_level(packet, 3) is None


# -- the detector, driven with explicit times ----------------------------------------

CONFIG = SpeakerConfig(
    interval=0.5, speaking_level=-50, silent_level=-60, hold=1.0, switch_margin=6
)


def feed(
    detector: SpeakerDetector, levels: dict[str, float], packets: int = 25
) -> None:
    for participant_id, level in levels.items():
        for _ in range(packets):
            detector.add(participant_id, level)


def test_speaking_starts_and_stops_with_hysteresis() -> None:
    detector = SpeakerDetector(CONFIG)
    detector.track("ann")
    assert not detector.evaluate(0.5)  # nothing received: silent
    feed(detector, {"ann": -30})
    update = detector.evaluate(1.0)
    assert update.started == ("ann",) and update.active_changed
    assert detector.active == "ann" and detector.speakers() == [("ann", -30.0)]
    # between the thresholds: no change, however long
    for step in range(6):
        feed(detector, {"ann": -55})
        assert not detector.evaluate(1.5 + step * 0.5)
    # quieter than silent_level, but not for `hold` seconds yet
    feed(detector, {"ann": -90})
    assert not detector.evaluate(5.0)
    feed(detector, {"ann": -30})  # speaks again: the quiet time starts over
    assert not detector.evaluate(5.5)
    feed(detector, {"ann": -90})
    assert not detector.evaluate(6.0)
    feed(detector, {"ann": -90})
    assert not detector.evaluate(6.5)
    update = detector.evaluate(7.0)  # no packets at all counts as silence
    assert update.stopped == ("ann",) and update.active_changed
    assert detector.active is None and detector.speakers() == []


def test_a_brief_sound_in_a_silent_interval_is_not_speech() -> None:
    detector = SpeakerDetector(CONFIG)
    detector.add("ann", -10)  # one loud packet among silent ones
    feed(detector, {"ann": -127}, packets=24)
    assert not detector.evaluate(0.5)
    assert detector.active is None


def test_the_active_speaker_changes_only_for_a_clearly_louder_one() -> None:
    detector = SpeakerDetector(CONFIG)
    feed(detector, {"ann": -30, "bob": -27})
    update = detector.evaluate(0.5)
    assert set(update.started) == {"ann", "bob"} and detector.active == "bob"
    feed(detector, {"ann": -25, "bob": -28})  # ann louder, by less than the margin
    assert not detector.evaluate(1.0).active_changed
    assert detector.active == "bob"
    assert [p for p, _ in detector.speakers()] == ["ann", "bob"]
    feed(detector, {"ann": -20, "bob": -28})  # by 8 dB: ann takes over
    assert detector.evaluate(1.5).active_changed and detector.active == "ann"


def test_a_speaker_that_leaves_stops_speaking() -> None:
    detector = SpeakerDetector(CONFIG)
    feed(detector, {"ann": -30, "bob": -45})
    detector.evaluate(0.5)
    assert detector.active == "ann"
    detector.remove("ann")
    feed(detector, {"bob": -45})
    update = detector.evaluate(1.0)
    assert update.stopped == ("ann",) and update.active_changed
    assert detector.active == "bob"


# -- end to end: aiortc publishers whose packets carry the level ---------------------


async def test_the_room_follows_the_loud_publisher(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    events: list[RoomEvent] = []
    room.add_listener(events.append)
    host = await peers("host", code=1, publish_video=False, tone=440).join(room, "host")
    guest = await peers("guest", code=2, publish_video=False, tone=660).join(room)
    listener = await peers(
        "listener", code=3, publish_video=False, publish_audio=False
    ).join(room)
    assert host.audio is not None and guest.audio is not None
    guest.audio.amplitude = 0  # aiortc still sends packets, at -127 dBov

    def active() -> str | None:
        spoken = [e for e in events if isinstance(e, ActiveSpeakerChangedEvent)]
        return spoken[-1].participant_id if spoken else None

    def told(peer: object) -> str | None:
        said = [m for m in peer.messages if isinstance(m, Speaking)]  # type: ignore[attr-defined]
        return said[-1].active if said else None

    await eventually(lambda: active() == "host", what="the host as active speaker")
    assert room.active_speaker == "host"
    assert [p for p, _ in room.speakers] == ["host"]
    assert -40 < room.speakers[0][1] < -5  # aiortc's level of a 8000-peak tone
    await eventually(lambda: told(listener) == "host" and told(guest) == "host")
    started = [e for e in events if isinstance(e, SpeakingChangedEvent)]
    assert [(e.participant_id, e.speaking) for e in started] == [("host", True)]

    host.audio.amplitude, guest.audio.amplitude = 0, 8000
    await eventually(lambda: active() == "guest", what="the guest taking over")
    await eventually(lambda: told(listener) == "guest" and told(host) == "guest")
    await eventually(
        lambda: any(
            isinstance(e, SpeakingChangedEvent)
            and e.participant_id == "host"
            and not e.speaking
            for e in events
        ),
        what="the host to stop speaking",
    )
    # a Speaking message is sent on changes only, never per packet
    assert len([m for m in listener.messages if isinstance(m, Speaking)]) <= 6

    guest.audio.amplitude = 0
    await eventually(lambda: active() is None, what="silence")
    await eventually(lambda: told(listener) is None)


async def test_members_only_hear_of_speakers_they_receive(
    sfu: SFU, peers: PeerFactory
) -> None:
    stage = sfu.create_room("stage", max_participants=3, eligibility=host_only)
    other = sfu.create_room("other")
    events: list[RoomEvent] = []
    stage.add_listener(events.append)
    quiet = {"publish_video": False, "publish_audio": False}
    host = await peers("host", code=1, **quiet).join(stage, "host")
    ann = await peers("ann", code=2, publish_video=False).join(stage)  # loud
    bob = await peers("bob", code=3, **quiet).join(stage)
    elsewhere = await peers("elsewhere", code=4, **quiet).join(other, "host")

    await eventually(lambda: stage.active_speaker == "ann", what="ann speaking")
    # ann is told about herself; nobody receives her, so nobody else is told
    await eventually(lambda: any(isinstance(m, Speaking) for m in ann.messages))
    said = [m for m in ann.messages if isinstance(m, Speaking)][-1]
    assert said.active == "ann" and said.speakers[0]["participant_id"] == "ann"
    # one message more to everyone: in order, after any "speaking" they got
    await peers("late", code=5, **quiet).join(stage)
    await peers("late2", code=6, **quiet).join(other)
    for peer, newcomer in ((host, "late"), (bob, "late"), (elsewhere, "late2")):
        await eventually(
            lambda p=peer, n=newcomer: any(  # type: ignore[misc]
                m.participant_id == n for m in p.saw(ParticipantJoined)
            )
        )
        assert not any(isinstance(m, Speaking) for m in peer.messages)
    assert any(isinstance(e, ActiveSpeakerChangedEvent) for e in events)
    assert other.active_speaker is None and other.speakers == []
