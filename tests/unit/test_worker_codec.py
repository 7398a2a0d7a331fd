"""The worker pipe's JSON forms: every frame, message, event and error round-trips.

Pure: no processes, no sockets. The parametrisation is over the unions
themselves (``typing.get_args``), so a message or event added to
:mod:`pysfu.messages` or :mod:`pysfu.events` without a sample here fails
``test_every_member_has_a_sample`` rather than going untested; the same holds
for the pipe's own requests and notices (:mod:`pysfu.workers.protocol`).
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from pysfu import errors
from pysfu.events import (
    ActiveSpeakerChangedEvent,
    DataDroppedEvent,
    DataMessageEvent,
    HostAwayEvent,
    LayerChangedEvent,
    MediaFlowingEvent,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomClosedEvent,
    RoomEvent,
    SpeakingChangedEvent,
    TrackPublishedEvent,
    TrackUnpublishedEvent,
)
from pysfu.messages import (
    Error,
    HostAway,
    Joined,
    Offer,
    ParticipantJoined,
    ParticipantLeft,
    Recording,
    RoomClosed,
    ServerMessage,
    Speaking,
)
from pysfu.workers import protocol
from pysfu.workers.codec import (
    ProtocolError,
    error_from_json,
    error_to_json,
    event_from_json,
    event_to_json,
    frame_to_json,
    notice_from_json,
    request_from_json,
    server_message_from_json,
    server_message_to_json,
)
from pysfu.workers.framing import FrameDecoder, encode_frame

#: At least one value of every server message, with its optional parts set.
MESSAGE_SAMPLES: list[Any] = [
    Joined(
        "room",
        "p1",
        "host",
        [{"participant_id": "p2", "role": "participant", "name": "Zoë 🎤"}],
    ),
    Joined("room", "p1", "participant"),
    Offer("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"),
    ParticipantJoined("p2", "participant", "Ann"),
    ParticipantLeft("p2", "participant"),
    RoomClosed("host left"),
    HostAway("p1", 30.0),
    Speaking(
        [
            {"participant_id": "p1", "level": -31.5},
            {"participant_id": "p2", "level": -60.0},
        ],
        "p1",
    ),
    Speaking([], None),
    Recording(True),
    Recording(False),
    Error("bad_sdp", "the answer was rejected"),
]

#: At least one value of every room event; data events both as text and binary.
EVENT_SAMPLES: list[Any] = [
    ParticipantJoinedEvent("room", "p1", "host"),
    ParticipantLeftEvent("room", "p1", "host", "left"),
    TrackPublishedEvent("room", "p1", "t1", "video", "VP8"),
    TrackUnpublishedEvent("room", "p1", "t1", "video"),
    RoomClosedEvent("room", "closed"),
    DataMessageEvent("room", "p1", "hello ✓", ("p2", "p3")),
    DataMessageEvent("room", "p1", b"\x00\xffbinary\x80", ("p2",)),
    DataMessageEvent("room", "p1", b"", ()),
    DataDroppedEvent("room", "p1", "too_large", 70000),
    SpeakingChangedEvent("room", "p1", True, -27.25),
    SpeakingChangedEvent("room", "p1", False, -127.0),
    ActiveSpeakerChangedEvent("room", "p1", -30.0),
    ActiveSpeakerChangedEvent("room", None, None),
    LayerChangedEvent("room", "p2", "p1", "p1/video", "q", "f"),
    LayerChangedEvent("room", "p2", "p1", "p1/video", None, "q"),
    HostAwayEvent("room", "p1", "page unloaded", 30.0),
    MediaFlowingEvent("room", "p1", "publishing", "p1/video", "video"),
    MediaFlowingEvent("room", "p2", "receiving", "p1/video", "video"),
]


#: At least one value of every pipe request, with its optional parts set.
REQUEST_SAMPLES: list[Any] = [
    protocol.Init("gASVAAAAAAAAAAA="),
    protocol.Init("gASVAAAAAAAAAAA=", "gASV"),
    protocol.CreateRoom("room"),
    protocol.CreateRoom("room", 8, False, ["VP8", "H264"], "gASV"),
    protocol.Join("room", "p1", "host"),
    protocol.Join("room", "p1", "participant", "Zoë", "ufrag", "password" * 3),
    protocol.Stats(),
    protocol.CloseRoom("room", "host left"),
    protocol.Handle("room", "p1", {"type": "answer", "sdp": "v=0"}),
    protocol.Handle("room", "p1", ["not", "an", "object"]),  # checked in the worker
    protocol.Refuse("room", "p1", "rate_limited", "too many messages"),
    protocol.Leave("room", "p1", "left"),
    protocol.LeaveUnlessConnected("room", "p1", "credentials expired"),
    protocol.PendingOffer("room", "p1"),
    protocol.Shutdown(),
]

#: At least one value of every frame a worker sends.
NOTICE_SAMPLES: list[Any] = [
    protocol.Reply(1),
    protocol.Reply(2, "p1"),
    protocol.Reply(3, {"rooms": [], "totals": {"packets_forwarded": {"video": 3}}}),
    protocol.Reply(4, error={"type": "RoomFull", "message": "room r is full"}),
    protocol.Out("room", "p1", server_message_to_json(Offer("v=0"))),
    protocol.Closed("room", "p1"),
    protocol.EventNotice(
        event_to_json(DataMessageEvent("room", "p1", b"\x00\x01", ("p2",)))
    ),
    protocol.Usage(12.5),
]


def _through_the_pipe(obj: dict[str, Any]) -> dict[str, Any]:
    """What the other end of the pipe decodes: framed JSON, as the pool sends."""
    (decoded,) = FrameDecoder().feed(encode_frame(obj))
    assert isinstance(decoded, dict)
    return decoded


@pytest.mark.parametrize(
    "union, samples",
    [
        (ServerMessage, MESSAGE_SAMPLES),
        (RoomEvent, EVENT_SAMPLES),
        (protocol.Request, REQUEST_SAMPLES),
        (protocol.Notice, NOTICE_SAMPLES),
    ],
    ids=["ServerMessage", "RoomEvent", "Request", "Notice"],
)
def test_every_member_has_a_sample(union: Any, samples: list[Any]) -> None:
    assert {type(s) for s in samples} == set(typing.get_args(union))


@pytest.mark.parametrize("message", MESSAGE_SAMPLES, ids=repr)
def test_every_server_message_round_trips(message: ServerMessage) -> None:
    frame = {"type": "out", "message": server_message_to_json(message)}
    again = server_message_from_json(_through_the_pipe(frame)["message"])
    assert again == message and type(again) is type(message)


@pytest.mark.parametrize("event", EVENT_SAMPLES, ids=repr)
def test_every_room_event_round_trips(event: RoomEvent) -> None:
    frame = {"type": "event", **event_to_json(event)}
    again = event_from_json(_through_the_pipe(frame))
    assert again == event and type(again) is type(event)


@pytest.mark.parametrize("request_id", [None, 7])
@pytest.mark.parametrize("frame", REQUEST_SAMPLES, ids=repr)
def test_every_pipe_request_round_trips(
    frame: protocol.Request, request_id: int | None
) -> None:
    again = request_from_json(_through_the_pipe(frame_to_json(frame, request_id)))
    assert again == (frame, request_id) and type(again[0]) is type(frame)


@pytest.mark.parametrize("notice", NOTICE_SAMPLES, ids=repr)
def test_every_pipe_notice_round_trips(notice: protocol.Notice) -> None:
    again = notice_from_json(_through_the_pipe(frame_to_json(notice)))
    assert again == notice and type(again) is type(notice)


def test_requests_and_notices_have_distinct_tags() -> None:
    """One ``type`` names one frame class, whichever way it travels."""
    tags = [
        cls.type
        for union in (protocol.Request, protocol.Notice)
        for cls in typing.get_args(union)
    ]
    assert len(tags) == len(set(tags))


def test_binary_data_is_tagged_not_mangled() -> None:
    event = DataMessageEvent("room", "p1", b"\x00\x01", ("p2",))
    obj = event_to_json(event)
    assert obj["data"] == {"$b64": "AAE="}
    json.dumps(obj)  # JSON has no bytes: the tag is what makes this work
    text = event_from_json(event_to_json(DataMessageEvent("r", "p", "AAE=", ())))
    assert text.data == "AAE="  # type: ignore[union-attr]  # a str stays a str


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "no-such-message"},
        {"type": "offer"},  # a required field missing
        {"event": "NoSuchEvent", "room_id": "r"},
        {"type": "no-such-request", "id": 1},
        {"type": "leave", "room": "r", "participant": "p", "id": "1"},
        {"type": "join", "room": "r", "participant": "p"},  # no role
        {"event": "DataMessageEvent", "room_id": "r", "participant_id": "p",
         "data": {"$b64": "not base64!"}, "recipients": []},
    ],
)  # fmt: skip
def test_bad_frames_are_protocol_errors(obj: dict[str, Any]) -> None:
    if "event" in obj:
        decode: Any = event_from_json
    elif obj.get("type") in ("no-such-request", "leave", "join"):
        decode = request_from_json
    else:
        decode = server_message_from_json
    with pytest.raises(ProtocolError):
        decode(obj)


def _error_classes() -> list[type[errors.PysfuError]]:
    return [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.PysfuError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_round_trips(cls: type[errors.PysfuError]) -> None:
    if cls is errors.SignallingError:
        error: errors.PysfuError = errors.SignallingError("rate_limited", "slow down")
    else:
        error = cls("what went wrong")
    again = error_from_json(_through_the_pipe(error_to_json(error)))
    assert type(again) is cls
    assert isinstance(again, errors.PysfuError)
    assert (again.code, str(again), again.http_status) == (
        error.code,
        str(error),
        error.http_status,
    )


def test_other_exceptions_cross_as_value_error_or_pysfu_error() -> None:
    assert type(error_from_json(error_to_json(ValueError("x")))) is ValueError
    assert type(error_from_json(error_to_json(KeyError("x")))) is errors.PysfuError
