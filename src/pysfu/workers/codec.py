"""JSON forms of what crosses the pipe: frames, messages, events, stats, errors.

Pure functions, no I/O. Everything the core hands an adapter or a listener
is a frozen dataclass, so the JSON form is its fields (plus a tag naming the
class) and the parent rebuilds the same dataclass from it.
"""

from __future__ import annotations

import base64
import pickle
import types
import typing
from dataclasses import asdict, fields
from typing import Any

from .. import errors
from ..errors import ProtocolError
from ..events import RoomEvent
from ..messages import ServerMessage
from ..stats import (
    ParticipantStats,
    PublishedTrackStats,
    RoomStats,
    SFUStats,
    SubscriptionStats,
    Totals,
)
from .protocol import Notice, Request

__all__ = [
    "BYTES_TAG",
    "EVENT_TYPES",
    "NOTICE_TYPES",
    "REQUEST_TYPES",
    "SERVER_MESSAGE_TYPES",
    "ProtocolError",
    "add_totals",
    "dump_object",
    "error_from_json",
    "error_to_json",
    "event_from_json",
    "event_to_json",
    "frame_to_json",
    "load_object",
    "notice_from_json",
    "request_from_json",
    "server_message_from_json",
    "server_message_to_json",
    "stats_from_json",
    "stats_to_json",
    "totals_to_json",
]

# Derived from the unions, never listed by hand: a new message or event
# crosses the pipe as soon as it joins its union.
#: Every server message class, by its ``type``.
SERVER_MESSAGE_TYPES: dict[str, type[ServerMessage]] = {
    cls.type: cls for cls in typing.get_args(ServerMessage)
}
#: Every room event class, by its class name.
EVENT_TYPES: dict[str, type[RoomEvent]] = {
    cls.__name__: cls for cls in typing.get_args(RoomEvent)
}

#: Every request of the pool to a worker, by its ``type``.
REQUEST_TYPES: dict[str, type[Request]] = {
    cls.type: cls for cls in typing.get_args(Request)
}
#: Every frame a worker sends the pool, by its ``type``.
NOTICE_TYPES: dict[str, type[Notice]] = {
    cls.type: cls for cls in typing.get_args(Notice)
}

#: The key of the one-key object that stands for a ``bytes`` value
#: (a binary data channel message), whose value is its base64 text.
BYTES_TAG = "$b64"


def frame_to_json(
    frame: Request | Notice, request_id: int | None = None
) -> dict[str, Any]:
    """A pipe frame as a JSON object: its fields, ``"type"``, and the
    ``"id"`` of a request that wants a reply.

    The fields are JSON already: a message or event inside a frame is in its
    own JSON form (with its ``bytes`` tagged), decoded by its own function.
    """
    obj = {
        "type": frame.type,
        **{f.name: getattr(frame, f.name) for f in fields(frame)},
    }
    if request_id is not None:
        obj["id"] = request_id
    return obj


def request_from_json(obj: dict[str, Any]) -> tuple[Request, int | None]:
    """A request to a worker, and its id (``None``: no reply wanted)."""
    cls = REQUEST_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise ProtocolError(f"unknown request {obj.get('type')!r}")
    request_id = obj.get("id")
    if request_id is not None and (
        not isinstance(request_id, int) or isinstance(request_id, bool)
    ):
        raise ProtocolError(f"bad request id {request_id!r}")
    request: Request = _build(cls, obj, decode=False)
    return request, request_id


def notice_from_json(obj: dict[str, Any]) -> Notice:
    """A frame from a worker: a reply, a message for a client, an event..."""
    cls = NOTICE_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise ProtocolError(f"unknown frame type {obj.get('type')!r}")
    notice: Notice = _build(cls, obj, decode=False)
    return notice


def server_message_to_json(message: ServerMessage) -> dict[str, Any]:
    """A server message as a JSON object: its fields plus ``"type"``."""
    return {"type": message.type, **_encode(asdict(message))}


def server_message_from_json(obj: dict[str, Any]) -> ServerMessage:
    """Rebuild a server message from :func:`server_message_to_json`'s output
    (or ``pysfu.messages.to_json``'s, the same for messages without bytes)."""
    cls = SERVER_MESSAGE_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise ProtocolError(f"unknown server message type {obj.get('type')!r}")
    message: ServerMessage = _build(cls, obj)
    return message


def event_to_json(event: RoomEvent) -> dict[str, Any]:
    """A room event as a JSON object: its fields plus ``"event"`` (the class)."""
    return {"event": type(event).__name__, **_encode(asdict(event))}


def event_from_json(obj: dict[str, Any]) -> RoomEvent:
    """Rebuild a room event from :func:`event_to_json`'s output."""
    cls = EVENT_TYPES.get(obj.get("event", ""))
    if cls is None:
        raise ProtocolError(f"unknown event {obj.get('event')!r}")
    event: RoomEvent = _build(cls, obj)
    return event


def _encode(value: Any) -> Any:
    """``value`` with every ``bytes`` replaced by a tagged object (JSON has none)."""
    if isinstance(value, bytes):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and BYTES_TAG in value:
            try:
                return base64.b64decode(value[BYTES_TAG], validate=True)
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"bad bytes value: {exc}") from exc
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _is_tuple_type(hint: Any) -> bool:
    """Whether a field annotation is a tuple (or a union with one): JSON
    turns tuples into lists, and a frozen dataclass must get its tuple back."""
    if typing.get_origin(hint) is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(hint))
    return False


def _build(cls: type[Any], obj: dict[str, Any], *, decode: bool = True) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            continue
        value = _decode(obj[f.name]) if decode else obj[f.name]
        if isinstance(value, list) and _is_tuple_type(hints.get(f.name)):
            value = tuple(value)
        values[f.name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ProtocolError(f"bad {cls.__name__}: {exc}") from exc


def stats_to_json(stats: SFUStats) -> list[dict[str, Any]]:
    """Every room's stats snapshot as JSON objects."""
    return [asdict(room) for room in stats.rooms]


def stats_from_json(rooms: list[dict[str, Any]]) -> tuple[RoomStats, ...]:
    """Rebuild the room snapshots :func:`stats_to_json` wrote."""
    return tuple(_room_stats(room) for room in rooms)


def _room_stats(obj: dict[str, Any]) -> RoomStats:
    members = tuple(
        ParticipantStats(
            **{
                **member,
                "published": tuple(
                    PublishedTrackStats(**t) for t in member["published"]
                ),
                "subscribed": tuple(
                    SubscriptionStats(**s) for s in member["subscribed"]
                ),
            }
        )
        for member in obj["members"]
    )
    return RoomStats(
        room_id=obj["room_id"],
        max_participants=obj["max_participants"],
        members=members,
    )


def totals_to_json(totals: Totals) -> dict[str, Any]:
    """Cumulative counters as a JSON object (see :func:`add_totals`)."""
    return asdict(totals)


def add_totals(total: Totals, obj: dict[str, Any]) -> None:
    """Add one worker's totals (JSON form) into ``total``."""
    for field in fields(Totals):
        value = obj[field.name]
        if isinstance(value, dict):
            counts: dict[str, int] = getattr(total, field.name)
            for key, count in value.items():
                counts[key] = counts.get(key, 0) + count
        else:
            setattr(total, field.name, getattr(total, field.name) + value)


def error_to_json(exc: BaseException) -> dict[str, str]:
    """What the worker answers a failed request with."""
    if isinstance(exc, errors.PysfuError):
        kind = type(exc).__name__
    elif isinstance(exc, ValueError):
        kind = "ValueError"
    else:
        kind = "PysfuError"
    obj = {"type": kind, "message": str(exc)}
    if isinstance(exc, errors.SignallingError):
        obj["code"] = exc.code  # per instance, unlike the other classes
    return obj


def error_from_json(obj: dict[str, Any]) -> Exception:
    """The exception to raise in the parent: the same pysfu error class, by name."""
    kind, message = str(obj.get("type")), str(obj.get("message", ""))
    if kind == "ValueError":
        return ValueError(message)
    if kind == "SignallingError":
        return errors.SignallingError(str(obj.get("code", "bad_message")), message)
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.PysfuError):
        return cls(message)
    return errors.PysfuError(message)


def dump_object(value: object) -> str:
    """A picklable value (a config, an eligibility function) as text.

    Only for the private pipe between the pool and the workers it started:
    both ends run the same code, and nothing else can write to the pipe.
    """
    return base64.b64encode(pickle.dumps(value)).decode()


def load_object(text: str) -> Any:
    """The value :func:`dump_object` wrote."""
    return pickle.loads(base64.b64decode(text))
