"""Settings, one dataclass per concern."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .forwarding.congestion import RembPolicy
    from .forwarding.retransmit import RetransmitPolicy
    from .forwarding.simulcast import SimulcastPolicy


def _default_remb_policy() -> RembPolicy:
    # imported here: pysfu.forwarding imports this module
    from .forwarding.congestion import SlowestSubscriber

    return SlowestSubscriber()


def _default_retransmit_policy() -> RetransmitPolicy:
    from .forwarding.retransmit import RetransmitPolicy

    return RetransmitPolicy()


def _default_simulcast_policy() -> SimulcastPolicy:
    from .forwarding.simulcast import SimulcastPolicy

    return SimulcastPolicy()


__all__ = [
    "DEFAULT_FORWARDED_EXTENSIONS",
    "ForwardingConfig",
    "IceConfig",
    "IceServer",
    "LimitsConfig",
    "SFUConfig",
    "SpeakerConfig",
]


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server handed to the server's ICE agents (and to clients).

    ``urls`` takes the usual forms: ``stun:host:port``,
    ``turn:host:port?transport=udp``, ``turns:host:port``.
    """

    urls: str
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class IceConfig:
    """How the server's side of each peer connection gathers ICE candidates.

    - ``host_addresses``: local addresses offered as host candidates. ``None``
      lets aioice offer every interface except loopback; tests and
      single-machine setups pass ``("127.0.0.1",)``.
    - ``announced_address``: the public address written into host candidates
      for a server behind a 1:1 NAT (mediasoup's ``announcedAddress``); the
      server still binds ``host_addresses``.
    - ``servers``: STUN/TURN servers the server itself uses. aiortc uses
      the first STUN and the first TURN server only, and a TURN server makes
      it allocate a relay for every participant: an SFU with a public
      address needs neither (hand TURN to clients instead).
    - ``lite``: the server announces ICE-lite and is always the controlled
      agent, so only a peer that knows the server side ICE password of its
      connection can complete ICE (see :func:`pysfu._aiortc.configure_ice`).
      Every browser, aiortc and GStreamer handle ICE-lite peers. An ICE-lite
      server also reads each connection's socket in batches, STUN first, so
      consent answers never wait behind a flood (``pysfu._aiortc.udpsock``).
    - ``port_range``: ``(low, high)``, inclusive: the UDP ports the server's
      ICE sockets bind to (one per peer connection and address), for a
      firewall or a container that publishes a port range. ``None`` lets
      the operating system choose. A connection finding every port of the
      range taken offers no candidate for that address (logged).

    Settings are checked when made: a bad address or range raises
    ``ValueError``, a value of the wrong type ``TypeError``.
    - ``shared_port``: receive every peer on one UDP port per host address
      (0: one the system picks) instead of a port per connection: one port to
      publish from a container or open in a firewall, and fewer wake-ups per
      packet. Needs ``lite`` and no ``servers``. ``None``: a port each.
    """

    host_addresses: tuple[str, ...] | None = None
    announced_address: str | None = None
    servers: tuple[IceServer, ...] = ()
    lite: bool = True
    #: Seconds between ICE consent checks (RFC 7675) to each peer.
    consent_interval: float = 2.0
    #: A peer that answered none of its checks (each retransmitted twice) for
    #: ``consent_interval * consent_failures`` seconds (10 s by default)
    #: counts as gone and is removed; a slow answer still counts.
    consent_failures: int = 5
    port_range: tuple[int, int] | None = None
    shared_port: int | None = None

    def __post_init__(self) -> None:
        if self.host_addresses is not None:
            if isinstance(self.host_addresses, str) or not isinstance(
                self.host_addresses, tuple
            ):
                raise TypeError(
                    "IceConfig.host_addresses must be a tuple of IP addresses, "
                    f"e.g. ('192.0.2.10',), not {self.host_addresses!r}"
                )
            if not self.host_addresses:
                raise ValueError(
                    "IceConfig.host_addresses is empty: no ICE candidate could be "
                    "offered; pass None to use every interface but loopback"
                )
            for address in self.host_addresses:
                _check_ip(address, "host_addresses")
        if self.announced_address is not None:
            _check_ip(self.announced_address, "announced_address")
        if not isinstance(self.servers, tuple) or not all(
            isinstance(s, IceServer) for s in self.servers
        ):
            raise TypeError(
                f"IceConfig.servers must be a tuple of IceServer, not {self.servers!r}"
            )
        if self.shared_port is not None:
            if (
                not isinstance(self.shared_port, int)
                or not 0 <= self.shared_port < 65536
            ):
                raise ValueError(
                    "IceConfig.shared_port must be a port number, "
                    f"not {self.shared_port!r}"
                )
            if self.port_range is not None:
                raise ValueError(
                    "IceConfig: give shared_port (one port for every peer) or "
                    "port_range (a port per connection), not both"
                )
        if self.port_range is not None:
            low, high = _port_range(self.port_range)
            if not 1 <= low <= high <= 65535:
                raise ValueError(
                    "IceConfig.port_range must be (low, high) with "
                    f"1 <= low <= high <= 65535, not {self.port_range!r}"
                )
        if self.consent_interval <= 0 or self.consent_failures < 1:
            raise ValueError(
                "IceConfig.consent_interval must be > 0 and consent_failures >= 1"
            )


def _check_ip(address: object, name: str) -> None:
    if not isinstance(address, str):
        raise TypeError(f"IceConfig.{name}: {address!r} is not a string")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(
            f"IceConfig.{name}: {address!r} is not an IP address "
            "(ICE candidates carry literal IPv4/IPv6 addresses, not host names)"
        ) from None


def _port_range(value: object) -> tuple[int, int]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(type(port) is int for port in value)
    ):
        raise TypeError(
            f"IceConfig.port_range must be a (low, high) tuple of ints, not {value!r}"
        )
    return value[0], value[1]


#: Header extensions copied from publisher to subscribers (renumbered to the
#: subscriber's ids). ``sdes:mid`` is never forwarded: its value names the
#: publisher's m-line, which means nothing on the subscriber's connection.
DEFAULT_FORWARDED_EXTENSIONS = frozenset(
    {
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:ietf:params:rtp-hdrext:toffset",
        "urn:3gpp:video-orientation",
    }
)


@dataclass(frozen=True)
class ForwardingConfig:
    """Tuning of the packet path.

    - ``keyframe_min_interval``: at most one keyframe request (PLI) per
      published track per this many seconds; requests in between are coalesced.
    - ``nack_history``: packets kept per video track to answer subscribers'
      NACKs from the SFU.
    - ``max_video_bitrate``: cap (bit/s) on the receiver-estimated bitrate
      (REMB) reported to video publishers; ``None`` reports the estimate as is.
    - ``forwarded_extensions``: RTP header extension URIs passed through.
    - ``rtcp_interval``: mean seconds between RTCP reports (SR/RR) per peer.
    - ``remb_policy``: how the REMB sent to a video publisher combines pysfu's
      uplink estimate, ``max_video_bitrate`` and the subscribers' own REMBs
      (:class:`~pysfu.forwarding.congestion.SlowestSubscriber` by default:
      the publisher sends no more than its slowest subscriber receives).
    - ``remb_stale_after``: seconds after which a subscriber's last REMB no
      longer counts (it left, or its browser stopped reporting).
    - ``retransmit``: bounds on answering a subscriber's NACKs (once per round
      trip per packet, a byte budget per subscriber), see
      :class:`~pysfu.forwarding.retransmit.RetransmitPolicy`.
    - ``simulcast``: offer publishers to send video as three encodings
      (rids ``q``, ``h``, ``f``, lowest first); each subscriber then gets the
      best layer its own bandwidth estimate carries (see
      :class:`~pysfu.forwarding.simulcast.SimulcastPolicy`,
      ``simulcast_policy``), and the publisher is held to its uplink rather
      than to its slowest subscriber.
    - ``transport_cc``: negotiate transport-wide congestion control with
      video publishers that offer it (browsers): pysfu reports when each of
      their packets arrived (:mod:`pysfu.rtp.twcc`) and the publisher
      estimates its own uplink, probing included, as in a direct call;
      pysfu's REMB then only passes on the cap and the subscribers'
      estimates. Publishers without it (aiortc, GStreamer unless asked) keep
      pysfu's own uplink estimate. Process-wide once any
      :class:`~pysfu.SFU` in the process enables it (it extends aiortc's
      tables, see :func:`pysfu._aiortc.register_transport_cc`).
    """

    keyframe_min_interval: float = 0.5
    nack_history: int = 512
    max_video_bitrate: int | None = 2_500_000
    forwarded_extensions: frozenset[str] = DEFAULT_FORWARDED_EXTENSIONS
    rtcp_interval: float = 1.0
    remb_policy: RembPolicy = field(default_factory=_default_remb_policy)
    remb_stale_after: float = 5.0
    retransmit: RetransmitPolicy = field(default_factory=_default_retransmit_policy)
    simulcast: bool = False
    simulcast_policy: SimulcastPolicy = field(default_factory=_default_simulcast_policy)
    transport_cc: bool = True


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds that keep one client or one burst from exhausting the server.

    - ``max_rooms``: rooms per :class:`~pysfu.SFU` (process); creating one
      more raises :class:`~pysfu.errors.TooManyRooms`.
    - ``max_pending``: admitted participants that have not opened their
      signalling yet, over all rooms (:class:`~pysfu.admission.Admission`);
      one more raises :class:`~pysfu.errors.TooManyPending`. A bound on
      memory, far above what the per-client quota lets one client take.
    - ``max_pending_per_client``: the same, per client address: one client
      cannot fill the pool and make every other room refuse. Within a room,
      pending grants are bounded by its seats.
    - ``pending_reserve``: seconds an admitted participant's seat is held
      firmly; after that, while it has not opened its signalling, a
      newcomer from another client address finding the room full takes the
      seat (the grant fails with ``credential_refused``).
    - ``room_idle_timeout``: seconds after which an :class:`~pysfu.SFU`
      closes a room that has had no members, or (for a room that closes
      when its host leaves) no host, all that time: a room whose host never
      came or never connected does not hold its place among ``max_rooms``
      forever. ``None`` keeps such rooms open until closed explicitly.
    - ``host_grace``: seconds a room that closes when its host leaves stays
      open after its host went away *without* leaving on purpose (its page
      reloaded, its connection or signalling was lost, ...): the others are
      told the host is away (:class:`~pysfu.messages.HostAway`,
      :class:`~pysfu.events.HostAwayEvent`) and the room closes with reason
      ``"host left"`` only if no host joins within it. A host's ``leave``
      message (reason ``"left"``) closes the room at once. ``0`` (the
      default): the room closes as soon as the host goes. Keep it below
      ``room_idle_timeout``, which closes a room without a host first.
    - ``guest_grace``: seconds a participant (not the host) that went
      without leaving on purpose (its page reloaded, its connection was
      lost) keeps its seat against newcomers: :class:`~pysfu.admission.Admission`
      counts the seat as taken and gives it back only to the holder of the
      participant's rejoin credential (:attr:`~pysfu.admission.JoinGrant.rejoin`).
      A ``leave`` message frees the seat at once. ``0`` (the default): a
      departed participant's seat is free at once, and grants carry no
      rejoin credential.
    - ``max_tracks_per_participant``: tracks one participant may publish;
      further ones are not forwarded.
    - ``max_subscribers_per_track``: subscribers one track is forwarded to;
      further eligible participants do not receive it (logged).
    - ``messages_per_second`` and ``message_burst``: signalling messages a
      client may send (token bucket); the excess is refused with
      ``rate_limited`` (one error per second at most) and dropped.
    - ``max_data_message_size``, ``data_messages_per_second``,
      ``data_message_burst``, ``data_buffer_limit``: the same for messages
      on the data channel (see :mod:`pysfu.datachannel`).
    - ``cpu_budget`` and ``cpu_budget_window``: the share of one core a
      participant may make the server spend on its signalling, data channel
      packets, trickled candidates and RTCP over any ``cpu_budget_window``
      seconds (see :mod:`pysfu.accounting`); a participant over it is
      removed with reason ``cpu_budget``. ``None``: measured, never enforced.

    The size of one signalling message is bounded separately, by
    :data:`pysfu.signalling.adapter.MAX_MESSAGE_LENGTH` (68 KiB).
    """

    max_rooms: int = 1000
    max_pending: int = 10_000
    max_pending_per_client: int = 20
    pending_reserve: float = 2.0
    room_idle_timeout: float | None = None
    host_grace: float = 0.0
    guest_grace: float = 0.0
    max_tracks_per_participant: int = 4
    max_subscribers_per_track: int = 100
    messages_per_second: float = 20.0
    message_burst: int = 50
    #: Largest data channel message a client may send, in bytes (UTF-8 for
    #: text); larger ones are dropped and the sender gets ``data_too_large``.
    max_data_message_size: int = 16 * 1024
    #: Data channel messages a client may send (token bucket); the excess is
    #: dropped and the sender gets ``data_rate_limited`` (once per second).
    data_messages_per_second: float = 20.0
    data_message_burst: int = 40
    #: Bytes queued on a recipient's data channel beyond which messages to
    #: it are dropped (a client that does not read must not grow the server).
    data_buffer_limit: int = 1 << 20
    #: Half a core for 10 s is 5 s of CPU. A participant's joining costs
    #: tens of milliseconds; each renegotiation (someone joins or publishes)
    #: costs more in a large room, so a burst of joins must fit with room.
    cpu_budget: float | None = 0.5
    cpu_budget_window: float = 10.0


@dataclass(frozen=True)
class SpeakerConfig:
    """Active-speaker detection from the RFC 6464 audio level of each packet.

    Every ``interval`` seconds the room averages the level (dBov, 0 is the
    loudest, -127 silence) each publisher's audio packets carried. A
    publisher starts speaking when its average is at least
    ``speaking_level``, and stops once it has stayed below ``silent_level``
    for ``hold`` seconds: levels in between change nothing (hysteresis).
    The *active* speaker is the loudest one speaking; another speaker takes
    over only when louder by ``switch_margin`` dB or when it stops.
    """

    enabled: bool = True
    interval: float = 0.4
    speaking_level: float = -50.0
    silent_level: float = -60.0
    hold: float = 0.8
    switch_margin: float = 6.0


@dataclass(frozen=True)
class SFUConfig:
    """Everything an :class:`~pysfu.SFU` needs; all fields have working defaults."""

    ice: IceConfig = field(default_factory=IceConfig)
    forwarding: ForwardingConfig = field(default_factory=ForwardingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    #: Give every participant's connection a data channel that the server
    #: relays between participants (see :mod:`pysfu.datachannel`).
    data_channels: bool = True
    #: Kinds every participant is offered to publish when it joins.
    publish_kinds: tuple[str, ...] = ("audio", "video")
    #: Video codecs aiortc cannot encode or decode that the SFU negotiates and
    #: forwards anyway (registered with aiortc for the whole process).
    passthrough_codecs: tuple[str, ...] = ("VP9", "AV1")
    #: Reuse a transceiver whose track ended for the next track of its kind,
    #: so a long-lived connection does not grow one m-line per track ever
    #: received. Browsers handle this; aiortc clients cannot receive on a
    #: transceiver again once its track ended, so a client recognised as
    #: aiortc (by its answer) gets new ones whatever this says.
    reuse_transceivers: bool = True
