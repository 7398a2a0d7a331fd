"""Statistics snapshots: per room, participant, published track and subscription.

Everything here is a plain, frozen dataclass built on demand from the live
counters (:meth:`SFU.stats`, :meth:`Room.stats`, :meth:`Participant.stats`);
taking a snapshot changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .accounting import find_account

if TYPE_CHECKING:
    from .forwarding import DownTrack, Forwarder

__all__ = [
    "REMOVAL_REASONS",
    "DataChannelStats",
    "ParticipantStats",
    "PublishedTrackStats",
    "RoomStats",
    "SFUStats",
    "SubscriptionStats",
    "Totals",
]


@dataclass(frozen=True)
class PublishedTrackStats:
    """A track as the SFU receives it from its publisher."""

    track_id: str
    kind: str
    codec: str
    packets_received: int
    bytes_received: int
    #: Packets the publisher sent that never arrived (RTP sequence gaps).
    packets_lost: int
    #: Interarrival jitter in RTP timestamp units (RFC 3550).
    jitter: int
    retransmissions_received: int
    unknown_payload_type: int
    #: Packets of SSRCs the publisher's SDP did not announce (dropped).
    unknown_ssrc: int
    nacks_sent: int
    #: Keyframe requests received from subscribers or made by the SFU.
    keyframe_requests: int
    #: Keyframe requests (PLI) actually sent to the publisher, after throttling.
    keyframe_requests_sent: int
    subscribers: int
    #: The last bitrate (bit/s) asked of the publisher (REMB): its uplink
    #: estimate, the cap and the subscribers' estimates combined by the
    #: room's ``remb_policy``.
    remb_bitrate: int | None = None
    #: pysfu's own estimate of the publisher's uplink (bit/s).
    uplink_estimate: int | None = None
    #: Whether the publisher estimates its uplink itself, from the
    #: transport-wide feedback pysfu sends (``None``: not known yet).
    publisher_estimates: bool | None = None
    #: Simulcast: each layer's (rid's) received bitrate (bit/s, last 2 s)
    #: and frame rate (frames/s, last 4 s), what the layer choice goes by;
    #: ``None`` while not known. Empty without simulcast.
    layer_bitrates: Mapping[str, int | None] = field(default_factory=dict)
    layer_fps: Mapping[str, float | None] = field(default_factory=dict)

    @classmethod
    def of(cls, forwarder: Forwarder) -> PublishedTrackStats:
        stats, stream = forwarder.stats, forwarder.receive_statistics
        codec = forwarder.primary_codec
        layer_bitrates: dict[str, int | None] = {}
        layer_fps: dict[str, float | None] = {}
        if forwarder.simulcast:
            now_ms = int(forwarder.clock() * 1000)
            rids = forwarder.rids
            layer_bitrates = dict(
                zip(rids, forwarder.layer_bitrates(now_ms), strict=True)
            )
            layer_fps = {
                rid: None if fps is None else round(fps, 1)
                for rid, fps in zip(rids, forwarder.layer_fps(now_ms), strict=True)
            }
        return cls(
            track_id=forwarder.track_id,
            kind=forwarder.kind,
            codec=codec.mime_type if codec else "",
            packets_received=stats.packets_received,
            bytes_received=stats.bytes_received,
            packets_lost=stream.packets_lost
            if stream and stream.max_seq is not None
            else 0,
            jitter=stream.jitter if stream else 0,
            retransmissions_received=stats.retransmissions_received,
            unknown_payload_type=stats.unknown_payload_type,
            unknown_ssrc=stats.unknown_ssrc,
            nacks_sent=stats.nacks_sent,
            keyframe_requests=forwarder.keyframes.requested,
            keyframe_requests_sent=forwarder.keyframes.sent,
            subscribers=len(forwarder.downtracks),
            remb_bitrate=stats.remb_bitrate,
            uplink_estimate=stats.uplink_estimate,
            publisher_estimates=stats.publisher_estimates,
            layer_bitrates=layer_bitrates,
            layer_fps=layer_fps,
        )


@dataclass(frozen=True)
class SubscriptionStats:
    """A forwarded track as one subscriber gets it."""

    track_id: str
    publisher_id: str
    kind: str
    packets_sent: int
    bytes_sent: int
    #: Packets not sent: before the first keyframe, the subscriber's
    #: transport was not connected or its socket buffer was full, or the
    #: packet was too large (those also in ``packets_dropped_too_large``).
    packets_dropped: int
    retransmitted: int
    nacks_received: int
    keyframe_requests_received: int
    #: As the subscriber reported it (RTCP receiver reports).
    packets_lost: int
    fraction_lost: float
    jitter: int
    round_trip_time: float | None
    #: Packets not sent because they do not fit a UDP datagram once encrypted.
    packets_dropped_too_large: int = 0
    #: The subscriber's latest REMB (bit/s) covering this stream.
    remb_bitrate: int | None = None
    #: Retransmissions held back until the subscriber's budget allowed them.
    retransmissions_paced: int = 0
    #: NACKed packets not resent, by reason (``too_soon``, ``queue_full``,
    #: ``not_in_history``, ...; see :mod:`pysfu.forwarding.retransmit`).
    retransmissions_refused: Mapping[str, int] = field(default_factory=dict)
    #: Simulcast: the rid of the layer sent now (``None``: none, or the
    #: publisher does not simulcast) and how many times it changed.
    layer: str | None = None
    layer_switches: int = 0

    @classmethod
    def of(cls, downtrack: DownTrack) -> SubscriptionStats:
        stats = downtrack.stats
        return cls(
            track_id=downtrack.forwarder.track_id,
            publisher_id=downtrack.forwarder.publisher_id,
            kind=downtrack.kind,
            packets_sent=stats.packets_sent,
            bytes_sent=stats.bytes_sent,
            packets_dropped=stats.dropped,
            retransmitted=stats.retransmitted,
            nacks_received=stats.nacks_received,
            keyframe_requests_received=stats.keyframe_requests_received,
            packets_lost=stats.packets_lost,
            fraction_lost=stats.fraction_lost,
            jitter=stats.jitter,
            round_trip_time=stats.round_trip_time,
            packets_dropped_too_large=stats.dropped_too_large,
            remb_bitrate=stats.remb_bitrate,
            retransmissions_paced=stats.retransmissions_paced,
            retransmissions_refused=dict(stats.retransmissions_refused),
            layer=stats.layer,
            layer_switches=stats.layer_switches,
        )


@dataclass(frozen=True)
class DataChannelStats:
    """A participant's data channel (see :mod:`pysfu.datachannel`)."""

    #: Messages (and their bytes) this participant sent, relayed or not.
    messages_received: int = 0
    bytes_received: int = 0
    #: Its messages not relayed: too large, over the rate limit, or filtered.
    messages_dropped: int = 0
    #: Messages (and bytes, envelope included) delivered to it.
    messages_sent: int = 0
    bytes_sent: int = 0
    #: Messages for it not sent: its channel was not open or too backed up.
    send_dropped: int = 0
    #: Its SCTP associations the server aborted because it broke the limits
    #: the server advertised (message size, window, chunks held, unordered
    #: fragments; its data channel closed, the error ``data_too_large``).
    sctp_aborts: int = 0


@dataclass(frozen=True)
class ParticipantStats:
    participant_id: str
    role: str
    connection_state: str
    published: tuple[PublishedTrackStats, ...]
    subscribed: tuple[SubscriptionStats, ...]
    #: Client messages refused with an error.
    signalling_errors: int
    #: Incoming RTP/RTCP that could not be decrypted, parsed or routed to a
    #: track.
    malformed_packets: int
    data: DataChannelStats = field(default_factory=DataChannelStats)
    #: CPU seconds the server spent on this participant's signalling, data
    #: channel packets, trickled candidates and RTCP, by reason (see
    #: :mod:`pysfu.accounting`; forwarding its media is not included).
    cpu_seconds: Mapping[str, float] = field(default_factory=dict)
    #: :attr:`signalling_errors` by error code (``too_many_candidates``, ...).
    signalling_errors_by_code: Mapping[str, int] = field(default_factory=dict)
    #: Transport-wide feedback packets sent to it (a publisher that numbers
    #: its packets and estimates its own uplink, see :mod:`pysfu.rtp.twcc`).
    transport_feedback_sent: int = 0

    @classmethod
    def of(cls, participant: _Participant) -> ParticipantStats:
        pc = getattr(participant, "pc", None)  # (its CPU account's key)
        account = find_account(pc) if pc is not None else None
        return cls(
            participant_id=participant.id,
            role=participant.role.value,
            connection_state=participant.connection_state,
            published=tuple(
                PublishedTrackStats.of(f) for f in participant.publications.values()
            ),
            subscribed=tuple(
                SubscriptionStats.of(s.downtrack)
                for s in participant.subscriptions.values()
            ),
            signalling_errors=participant.signalling_errors,
            malformed_packets=participant.malformed_packets,
            data=participant.data.counters.snapshot()
            if participant.data is not None
            else DataChannelStats(),
            cpu_seconds=account.snapshot() if account is not None else {},
            signalling_errors_by_code=dict(participant.signalling_errors_by_code),
            transport_feedback_sent=participant.transport_feedback_sent,
        )


@dataclass(frozen=True)
class RoomStats:
    room_id: str
    max_participants: int
    members: tuple[ParticipantStats, ...]

    @classmethod
    def of(cls, room: _Room) -> RoomStats:
        return cls(
            room_id=room.id,
            max_participants=room.max_participants,
            members=tuple(ParticipantStats.of(p) for p in room.members.values()),
        )


@dataclass(frozen=True)
class SFUStats:
    rooms: tuple[RoomStats, ...]

    @classmethod
    def of(cls, sfu: _SFU) -> SFUStats:
        return cls(rooms=tuple(RoomStats.of(r) for r in sfu.rooms.values()))

    @property
    def participants(self) -> int:
        return sum(len(r.members) for r in self.rooms)

    @property
    def packets_forwarded(self) -> int:
        """Packets sent to subscribers, over all live subscriptions."""
        return sum(
            s.packets_sent for r in self.rooms for m in r.members for s in m.subscribed
        )


#: Departure reasons that mean the server removed a participant for what it
#: did, counted in :attr:`Totals.participants_removed`.
REMOVAL_REASONS = ("cpu_budget",)


@dataclass
class Totals:
    """Cumulative counters of an SFU since it started, including what
    participants that have left did (for monotonic metrics)."""

    participants_joined: int = 0
    participants_left: int = 0
    #: Of those that left, the ones the server removed, by reason
    #: (``cpu_budget``: see :data:`REMOVAL_REASONS`).
    participants_removed: dict[str, int] = field(default_factory=dict)
    signalling_errors: int = 0
    #: The same by error code.
    signalling_errors_by_code: dict[str, int] = field(default_factory=dict)
    #: By kind ("audio", "video").
    packets_received: dict[str, int] = field(default_factory=dict)
    bytes_received: dict[str, int] = field(default_factory=dict)
    packets_forwarded: dict[str, int] = field(default_factory=dict)
    bytes_forwarded: dict[str, int] = field(default_factory=dict)
    packets_dropped: int = 0
    #: Of the dropped packets, those too large for a UDP datagram.
    packets_dropped_too_large: int = 0
    retransmitted: int = 0
    keyframe_requests_sent: int = 0
    #: Data channel messages delivered to participants, and their bytes.
    data_messages_relayed: int = 0
    data_bytes_relayed: int = 0
    #: Data channel messages of participants that were not relayed.
    data_messages_dropped: int = 0
    #: Participants' SCTP associations aborted for breaking the limits
    #: (:attr:`DataChannelStats.sctp_aborts`).
    sctp_aborts: int = 0
    #: Transport-wide feedback packets sent to publishers.
    transport_feedback_sent: int = 0
    #: CPU seconds charged to participants, by reason (see
    #: :attr:`ParticipantStats.cpu_seconds`).
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def add_participant(self, participant: ParticipantStats) -> None:
        """Fold a participant's counters in (when it leaves)."""
        self.signalling_errors += participant.signalling_errors
        self.data_messages_relayed += participant.data.messages_sent
        self.data_bytes_relayed += participant.data.bytes_sent
        self.data_messages_dropped += participant.data.messages_dropped
        self.sctp_aborts += participant.data.sctp_aborts
        self.transport_feedback_sent += participant.transport_feedback_sent
        for code, count in participant.signalling_errors_by_code.items():
            _bump(self.signalling_errors_by_code, code, count)
        for reason, seconds in participant.cpu_seconds.items():
            self.cpu_seconds[reason] = self.cpu_seconds.get(reason, 0.0) + seconds
        for track in participant.published:
            _bump(self.packets_received, track.kind, track.packets_received)
            _bump(self.bytes_received, track.kind, track.bytes_received)
            self.keyframe_requests_sent += track.keyframe_requests_sent
        for subscription in participant.subscribed:
            self.add_subscription(subscription)

    def add_subscription(self, subscription: SubscriptionStats) -> None:
        """Fold a subscription's counters in (when it ends)."""
        _bump(self.packets_forwarded, subscription.kind, subscription.packets_sent)
        _bump(self.bytes_forwarded, subscription.kind, subscription.bytes_sent)
        self.packets_dropped += subscription.packets_dropped
        self.packets_dropped_too_large += subscription.packets_dropped_too_large
        self.retransmitted += subscription.retransmitted

    def plus_live(self, live: SFUStats) -> Totals:
        """These totals with the counters of everyone still connected added."""
        total = Totals(
            participants_joined=self.participants_joined,
            participants_left=self.participants_left,
            participants_removed=dict(self.participants_removed),
            signalling_errors=self.signalling_errors,
            signalling_errors_by_code=dict(self.signalling_errors_by_code),
            packets_received=dict(self.packets_received),
            bytes_received=dict(self.bytes_received),
            packets_forwarded=dict(self.packets_forwarded),
            bytes_forwarded=dict(self.bytes_forwarded),
            packets_dropped=self.packets_dropped,
            packets_dropped_too_large=self.packets_dropped_too_large,
            retransmitted=self.retransmitted,
            keyframe_requests_sent=self.keyframe_requests_sent,
            data_messages_relayed=self.data_messages_relayed,
            data_bytes_relayed=self.data_bytes_relayed,
            data_messages_dropped=self.data_messages_dropped,
            sctp_aborts=self.sctp_aborts,
            transport_feedback_sent=self.transport_feedback_sent,
            cpu_seconds=dict(self.cpu_seconds),
        )
        for room in live.rooms:
            for member in room.members:
                total.add_participant(member)
        return total


# What the snapshots read of the live objects (Participant, Room, SFU), as
# protocols: this module is below them and imports none of them.


class _DataCounters(Protocol):
    def snapshot(self) -> DataChannelStats: ...


class _DataChannel(Protocol):
    @property
    def counters(self) -> _DataCounters: ...


class _Subscription(Protocol):
    @property
    def downtrack(self) -> DownTrack: ...


class _Participant(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def role(self) -> enum.Enum: ...
    @property
    def connection_state(self) -> str: ...
    @property
    def publications(self) -> Mapping[str, Forwarder]: ...
    @property
    def subscriptions(self) -> Mapping[str, _Subscription]: ...
    @property
    def signalling_errors(self) -> int: ...
    @property
    def signalling_errors_by_code(self) -> Mapping[str, int]: ...
    @property
    def malformed_packets(self) -> int: ...
    @property
    def transport_feedback_sent(self) -> int: ...
    @property
    def data(self) -> _DataChannel | None: ...


class _Room(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def max_participants(self) -> int: ...
    @property
    def members(self) -> Mapping[str, _Participant]: ...


class _SFU(Protocol):
    @property
    def rooms(self) -> Mapping[str, _Room]: ...


def _bump(counts: dict[str, int], key: str, value: int) -> None:
    counts[key] = counts.get(key, 0) + value
