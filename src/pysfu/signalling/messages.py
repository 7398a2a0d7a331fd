"""Moved to :mod:`pysfu.messages`; this name is kept so old imports work."""

from ..messages import (
    MAX_SDP_LENGTH,
    Answer,
    Candidate,
    ClientMessage,
    Error,
    Joined,
    Leave,
    Offer,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    ServerMessage,
    SignallingError,
    Speaking,
    parse_client_message,
    to_json,
)

__all__ = [
    "MAX_SDP_LENGTH",
    "Answer",
    "Candidate",
    "ClientMessage",
    "Error",
    "Joined",
    "Leave",
    "Offer",
    "ParticipantJoined",
    "ParticipantLeft",
    "RoomClosed",
    "ServerMessage",
    "SignallingError",
    "Speaking",
    "parse_client_message",
    "to_json",
]
