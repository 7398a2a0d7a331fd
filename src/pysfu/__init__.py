"""pysfu: build WebRTC SFUs in Python on top of aiortc.

Media is forwarded at the RTP packet level, never decoded or re-encoded.
"""

from .answering import ClientOffer, Purpose
from .config import (
    ForwardingConfig,
    IceConfig,
    IceServer,
    LimitsConfig,
    SFUConfig,
    SpeakerConfig,
)
from .datachannel import DataFilter
from .errors import (
    BadOffer,
    CredentialError,
    CredentialExpired,
    CredentialRefused,
    CredentialUnknown,
    CredentialUsed,
    DuplicateParticipant,
    HostTaken,
    PysfuError,
    RoomClosedError,
    RoomExists,
    RoomFull,
    RoomNotFound,
    SignallingError,
    TooManyPending,
    TooManyRooms,
    Unauthorized,
    WorkerFailed,
)
from .events import (
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
from .forwarding import CodecInfo, DownTrack, Forwarder
from .participant import Participant, Role, Subscription
from .ports import RoleName
from .room import EligibilityPolicy, Room, everyone_else, host_only
from .rooms import JoinRequest, RoomOptions, Rooms, RoomSeats
from .sfu import SFU
from .stats import (
    DataChannelStats,
    ParticipantStats,
    PublishedTrackStats,
    RoomStats,
    SFUStats,
    SubscriptionStats,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "SFU",
    "ActiveSpeakerChangedEvent",
    "BadOffer",
    "ClientOffer",
    "CodecInfo",
    "CredentialError",
    "CredentialExpired",
    "CredentialRefused",
    "CredentialUnknown",
    "CredentialUsed",
    "DataChannelStats",
    "DataDroppedEvent",
    "DataFilter",
    "DataMessageEvent",
    "DownTrack",
    "DuplicateParticipant",
    "EligibilityPolicy",
    "Forwarder",
    "ForwardingConfig",
    "HostAwayEvent",
    "HostTaken",
    "IceConfig",
    "IceServer",
    "JoinRequest",
    "LayerChangedEvent",
    "LimitsConfig",
    "MediaFlowingEvent",
    "Participant",
    "ParticipantJoinedEvent",
    "ParticipantLeftEvent",
    "ParticipantStats",
    "PublishedTrackStats",
    "Purpose",
    "PysfuError",
    "Role",
    "RoleName",
    "Room",
    "RoomClosedError",
    "RoomClosedEvent",
    "RoomEvent",
    "RoomExists",
    "RoomFull",
    "RoomNotFound",
    "RoomOptions",
    "RoomSeats",
    "RoomStats",
    "Rooms",
    "SFUConfig",
    "SFUStats",
    "SignallingError",
    "SpeakerConfig",
    "SpeakingChangedEvent",
    "Subscription",
    "SubscriptionStats",
    "TooManyPending",
    "TooManyRooms",
    "TrackPublishedEvent",
    "TrackUnpublishedEvent",
    "Unauthorized",
    "WorkerFailed",
    "everyone_else",
    "host_only",
]
