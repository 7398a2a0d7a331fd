"""JSON forms of what crosses the pipe: messages, events, stats and errors.

Pure functions, no I/O. Everything the core hands an adapter or a listener
is a frozen dataclass, so the JSON form is its fields (plus a tag naming the
class) and the parent rebuilds the same dataclass from it.
"""

from __future__ import annotations

import base64
import pickle
from dataclasses import asdict, fields
from typing import Any

from .. import errors
from ..events import (
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomClosedEvent,
    RoomEvent,
    TrackPublishedEvent,
    TrackUnpublishedEvent,
)
from ..signalling.messages import (
    Error,
    Joined,
    Offer,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    ServerMessage,
)
from ..stats import (
    ParticipantStats,
    PublishedTrackStats,
    RoomStats,
    SFUStats,
    SubscriptionStats,
    Totals,
)

_SERVER_MESSAGES: dict[str, type[ServerMessage]] = {
    cls.type: cls
    for cls in (Joined, Offer, ParticipantJoined, ParticipantLeft, RoomClosed, Error)
}
_EVENTS: dict[str, type[RoomEvent]] = {
    cls.__name__: cls
    for cls in (
        ParticipantJoinedEvent,
        ParticipantLeftEvent,
        TrackPublishedEvent,
        TrackUnpublishedEvent,
        RoomClosedEvent,
    )
}


class ProtocolError(ValueError):
    """A frame from the other side does not have the expected shape."""


def server_message_from_json(obj: dict[str, Any]) -> ServerMessage:
    """Rebuild a server message from ``pysfu.signalling.to_json``'s output."""
    cls = _SERVER_MESSAGES.get(obj.get("type", ""))
    if cls is None:
        raise ProtocolError(f"unknown server message type {obj.get('type')!r}")
    message: ServerMessage = _build(cls, obj)
    return message


def event_to_json(event: RoomEvent) -> dict[str, Any]:
    return {"event": type(event).__name__, **asdict(event)}


def event_from_json(obj: dict[str, Any]) -> RoomEvent:
    cls = _EVENTS.get(obj.get("event", ""))
    if cls is None:
        raise ProtocolError(f"unknown event {obj.get('event')!r}")
    event: RoomEvent = _build(cls, obj)
    return event


def _build(cls: type[Any], obj: dict[str, Any]) -> Any:
    try:
        return cls(**{f.name: obj[f.name] for f in fields(cls) if f.name in obj})
    except TypeError as exc:
        raise ProtocolError(f"bad {cls.__name__}: {exc}") from exc


def stats_to_json(stats: SFUStats) -> list[dict[str, Any]]:
    return [asdict(room) for room in stats.rooms]


def stats_from_json(rooms: list[dict[str, Any]]) -> tuple[RoomStats, ...]:
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
    return {"type": kind, "message": str(exc)}


def error_from_json(obj: dict[str, Any]) -> Exception:
    """The exception to raise in the parent: the same pysfu error class, by name."""
    kind, message = str(obj.get("type")), str(obj.get("message", ""))
    if kind == "ValueError":
        return ValueError(message)
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
    return pickle.loads(base64.b64decode(text))
