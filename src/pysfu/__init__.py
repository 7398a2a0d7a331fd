"""pysfu: build WebRTC SFUs in Python on top of aiortc.

Media is forwarded at the RTP packet level, never decoded or re-encoded.
"""

from .answering import ClientOffer, Purpose
from .config import ForwardingConfig, IceConfig, IceServer, LimitsConfig, SFUConfig
from .errors import (
    BadOffer,
    CredentialError,
    CredentialExpired,
    CredentialUnknown,
    CredentialUsed,
    DuplicateParticipant,
    HostTaken,
    PysfuError,
    RoomClosedError,
    RoomExists,
    RoomFull,
    RoomNotFound,
    TooManyPending,
    TooManyRooms,
    Unauthorized,
)
from .events import (
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomClosedEvent,
    RoomEvent,
    TrackPublishedEvent,
    TrackUnpublishedEvent,
)
from .forwarding import CodecInfo, DownTrack, Forwarder
from .participant import Participant, Role, Subscription
from .room import SFU, EligibilityPolicy, Room, everyone_else, host_only
from .stats import (
    ParticipantStats,
    PublishedTrackStats,
    RoomStats,
    SFUStats,
    SubscriptionStats,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "SFU",
    "BadOffer",
    "ClientOffer",
    "CodecInfo",
    "CredentialError",
    "CredentialExpired",
    "CredentialUnknown",
    "CredentialUsed",
    "DownTrack",
    "DuplicateParticipant",
    "EligibilityPolicy",
    "Forwarder",
    "ForwardingConfig",
    "HostTaken",
    "IceConfig",
    "IceServer",
    "LimitsConfig",
    "Participant",
    "ParticipantJoinedEvent",
    "ParticipantLeftEvent",
    "ParticipantStats",
    "PublishedTrackStats",
    "Purpose",
    "PysfuError",
    "Role",
    "Room",
    "RoomClosedError",
    "RoomClosedEvent",
    "RoomEvent",
    "RoomExists",
    "RoomFull",
    "RoomNotFound",
    "RoomStats",
    "SFUConfig",
    "SFUStats",
    "Subscription",
    "SubscriptionStats",
    "TooManyPending",
    "TooManyRooms",
    "TrackPublishedEvent",
    "TrackUnpublishedEvent",
    "Unauthorized",
    "everyone_else",
    "host_only",
]
