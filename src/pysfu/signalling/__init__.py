"""Signalling: typed messages and the seam transport adapters plug into."""

from .adapter import Outbox, deliver_json
from .memory import MemoryClient, MemorySignalling
from .messages import (
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
    "Answer",
    "Candidate",
    "ClientMessage",
    "Error",
    "Joined",
    "Leave",
    "MemoryClient",
    "MemorySignalling",
    "Offer",
    "Outbox",
    "ParticipantJoined",
    "ParticipantLeft",
    "RoomClosed",
    "ServerMessage",
    "SignallingError",
    "Speaking",
    "deliver_json",
    "parse_client_message",
    "to_json",
]
