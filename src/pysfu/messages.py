"""The wire vocabulary: typed signalling messages and their JSON form.

The one source of truth for what a client and the server say to each other.
Signalling adapters, the worker pipe (:mod:`pysfu.workers.codec`) and the
test clients all derive their lists from the unions :data:`ClientMessage`
and :data:`ServerMessage` here, so adding a member is enough.

Each message has a JSON form (``to_json()``/``parse_client_message``) that the
WebSocket adapter and browser client use; in-process adapters pass the
dataclasses directly. Negotiation is server-driven: the server sends every
offer and the client only answers (see :mod:`pysfu.negotiation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .errors import PysfuError, SignallingError

__all__ = [
    "MAX_SDP_LENGTH",
    "Answer",
    "Candidate",
    "ClientMessage",
    "Error",
    "HostAway",
    "Joined",
    "Leave",
    "Offer",
    "ParticipantJoined",
    "ParticipantLeft",
    "Record",
    "Recording",
    "RestartIce",
    "RoomClosed",
    "ServerMessage",
    "SignallingError",
    "Speaking",
    "VideoQuality",
    "parse_client_message",
    "to_json",
]

# ---------------------------------------------------------------------------
# client -> server


@dataclass(frozen=True)
class Answer:
    """The client's SDP answer to the server's latest offer."""

    sdp: str
    type: ClassVar[str] = "answer"


@dataclass(frozen=True)
class Candidate:
    """A trickled ICE candidate of the client (``candidate: ""`` ends trickling)."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    type: ClassVar[str] = "candidate"


@dataclass(frozen=True)
class Leave:
    """The client leaves the room.

    ``rejoin``: the client means to come back (its page is reloading or
    closing, which a page cannot tell apart): a host leaving so keeps its
    room open for :attr:`pysfu.LimitsConfig.host_grace` seconds, as when
    its connection is lost. A plain leave (``rejoin`` false) is final: a
    host's closes the room at once.
    """

    rejoin: bool = False
    type: ClassVar[str] = "leave"


@dataclass(frozen=True)
class VideoQuality:
    """The client wants no simulcast layer of video track ``track_id`` above
    ``max_layer``: ``"q"`` (quarter), ``"h"`` (half) or ``"f"`` (full
    resolution), e.g. for a small tile. Its bandwidth may still hold it lower."""

    track_id: str
    max_layer: str
    type: ClassVar[str] = "video_quality"

    LAYERS: ClassVar[tuple[str, ...]] = ("q", "h", "f")


@dataclass(frozen=True)
class Record:
    """The host starts (``on``) or stops recording the room. Only a room
    whose application allows recording accepts it (``recording_disabled``
    otherwise), and only from its host (``not_host``)."""

    on: bool
    type: ClassVar[str] = "record"


@dataclass(frozen=True)
class RestartIce:
    """The client's network changed (or its ICE connection failed): it asks
    for an ICE restart. The server answers with a new offer carrying fresh
    ICE credentials; the client answers it with fresh ones of its own (as
    JSEP makes browsers do). DTLS and SRTP are kept: no new handshake."""

    type: ClassVar[str] = "restart_ice"


ClientMessage = Answer | Candidate | Leave | VideoQuality | Record | RestartIce

# ---------------------------------------------------------------------------
# server -> client


@dataclass(frozen=True)
class Joined:
    """Sent once, first: who the client is and who is already in the room."""

    room: str
    participant_id: str
    role: str
    participants: list[dict[str, str]] = field(default_factory=list)
    type: ClassVar[str] = "joined"


@dataclass(frozen=True)
class Offer:
    """An SDP offer from the server; the client must reply with an Answer."""

    sdp: str
    type: ClassVar[str] = "offer"


@dataclass(frozen=True)
class ParticipantJoined:
    participant_id: str
    role: str
    name: str = ""
    type: ClassVar[str] = "participant-joined"


@dataclass(frozen=True)
class ParticipantLeft:
    participant_id: str
    role: str
    type: ClassVar[str] = "participant-left"


@dataclass(frozen=True)
class HostAway:
    """The host went away without ending the call (a reload, a lost
    connection): the room stays open for ``grace`` seconds, waiting for a
    host to join again (a ``participant-joined`` with role ``host``), then
    closes with reason ``"host left"``."""

    participant_id: str
    grace: float
    type: ClassVar[str] = "host-away"


@dataclass(frozen=True)
class RoomClosed:
    reason: str
    type: ClassVar[str] = "room-closed"


@dataclass(frozen=True)
class Speaking:
    """Who speaks, sent when it changes: ``speakers`` (loudest first) are
    ``{"participant_id", "level"}`` objects (level: dBov, -127..0), ``active``
    the participant to highlight, or ``None`` in silence. A client only hears
    about participants it receives (and itself)."""

    speakers: list[dict[str, Any]] = field(default_factory=list)
    active: str | None = None
    type: ClassVar[str] = "speaking"


@dataclass(frozen=True)
class Recording:
    """Whether the room is being recorded: sent to every member when it
    changes, and after :class:`Joined` to a member joining while it is."""

    on: bool
    type: ClassVar[str] = "recording"


@dataclass(frozen=True)
class Error:
    """A problem with something the client sent; ``code`` is machine-readable."""

    code: str
    message: str
    type: ClassVar[str] = "error"

    @classmethod
    def of(cls, error: PysfuError) -> Error:
        """The message telling a client about ``error`` (its code and text)."""
        return cls(code=error.code, message=str(error))


ServerMessage = (
    Joined
    | Offer
    | ParticipantJoined
    | ParticipantLeft
    | HostAway
    | RoomClosed
    | Speaking
    | Recording
    | Error
)


def to_json(message: ClientMessage | ServerMessage) -> dict[str, Any]:
    """The JSON object form of a message: its fields plus ``"type"``."""
    return {"type": message.type, **asdict(message)}


#: Largest SDP accepted, in characters (a browser offer with audio+video is ~5 kB).
MAX_SDP_LENGTH = 64 * 1024


def _string(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise SignallingError("bad_message", f"'{key}' must be a string")
    return value


def parse_client_message(obj: object) -> ClientMessage:
    """Validate a decoded JSON value and build the client message it describes.

    Raises :class:`SignallingError` with a specific code for anything else.
    """
    if not isinstance(obj, Mapping):
        raise SignallingError("bad_message", "a message must be a JSON object")
    kind = obj.get("type")
    if kind == "answer":
        sdp = _string(obj, "sdp")
        if len(sdp) > MAX_SDP_LENGTH:
            raise SignallingError("bad_sdp", "the SDP is too large")
        return Answer(sdp=sdp)
    if kind == "candidate":
        index = obj.get("sdp_mline_index")
        if index is not None and (
            not isinstance(index, int) or isinstance(index, bool)
        ):
            raise SignallingError("bad_message", "'sdp_mline_index' must be an integer")
        return Candidate(
            candidate=_string(obj, "candidate"),
            sdp_mid=_string(obj, "sdp_mid", optional=True),
            sdp_mline_index=index,
        )
    if kind == "leave":
        rejoin = obj.get("rejoin", False)
        if not isinstance(rejoin, bool):
            raise SignallingError("bad_message", "'rejoin' must be true or false")
        return Leave(rejoin=rejoin)
    if kind == RestartIce.type:
        return RestartIce()
    if kind == VideoQuality.type:
        max_layer = _string(obj, "max_layer")
        if max_layer not in VideoQuality.LAYERS:
            raise SignallingError(
                "bad_message", "'max_layer' must be one of 'q', 'h', 'f'"
            )
        return VideoQuality(track_id=_string(obj, "track_id"), max_layer=max_layer)
    if kind == Record.type:
        on = obj.get("on")
        if not isinstance(on, bool):
            raise SignallingError("bad_message", "'on' must be true or false")
        return Record(on=on)
    if isinstance(kind, str):
        raise SignallingError("unknown_type", f"unknown message type {kind[:40]!r}")
    raise SignallingError("bad_message", "'type' must be a string")
