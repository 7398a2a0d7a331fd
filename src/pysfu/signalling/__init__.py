"""Signalling adapters: the transports between clients and the core.

The vocabulary itself lives in :mod:`pysfu.messages` and the core's port
types in :mod:`pysfu.ports`; both are re-exported here, as they were defined
here before, so ``from pysfu.signalling import Offer`` keeps working.
"""

from ..messages import (
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
from ..ports import Outbox
from .adapter import deliver_json
from .memory import MemoryClient, MemorySignalling

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
