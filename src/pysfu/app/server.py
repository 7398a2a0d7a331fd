"""pysfu's flagship app: a WebSocket SFU with a join backend and a browser client.

    pysfu serve            # installed with pip install 'pysfu[server]'
    python examples/ws_sfu.py   # the same, from a checkout

serves http://127.0.0.1:8080. Rooms have one host and up to
``--max-participants`` participants who all see and hear each other, chat
(over the data channel the server relays) and see who speaks. Only
holders of a host key may create rooms; with no key configured one is
generated and printed with a link that creates a room. Joining goes through
the HTTP join backend, which hands each client the ICE password of the
server's side of its connection: see docs/websocket-protocol.md.

With ``--workers N`` the rooms live in N worker processes (a
``WorkerPool``, one core each); this process keeps the
join backend and the signalling.

With ``--record-dir DIR`` the host may record the room (a Record button;
everyone sees that it records) and download the recordings, converted to
WebM: see ``pysfu.app.recordings``; with ``--workers`` too, the workers
write the files and this process serves them.

With ``--redis URL --node-url URL`` the server is one node of a cluster
sharing that Redis (``pysfu.app.cluster``): it claims the rooms it creates
there and redirects (HTTP 307) joins for another node's room to that node;
with ``--workers N`` too, the node's rooms and load are those of its workers.

Every option can also be set with an environment variable, named in --help.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pysfu import (
    SFU,
    ForwardingConfig,
    IceConfig,
    IceServer,
    LimitsConfig,
    PysfuError,
    RoomClosedEvent,
    RoomEvent,
    RoomExists,
    RoomOptions,
    Rooms,
    SFUConfig,
)
from pysfu._aiortc import default_host_addresses
from pysfu.admission import Admission, HostKeys, RedactSecrets
from pysfu.app.recordings import RECORD_MODES, AppRecordings
from pysfu.forwarding.simulcast import SimulcastPolicy
from pysfu.ratelimit import ClientLimits

try:
    import prometheus_client

    from pysfu.metrics import RoomsCollector
except ImportError:  # pragma: no cover - metrics are optional
    prometheus_client = None  # type: ignore[assignment]
from pysfu.signalling.adapter import SessionParticipant
from pysfu.signalling.connections import ConnectionGuard
from pysfu.signalling.join import (
    join_fields,
    join_response,
    json_body,
    public_scheme,
)
from pysfu.signalling.websocket import WebSocketSignalling
from pysfu.slugs import ascii_slug, emoji_slug, slug_path
from pysfu.turn import with_turn_credentials
from pysfu.workers import WorkerPool
from pysfu.workers.pool import WORKER_FAILED

if TYPE_CHECKING:  # imported when used: redis is the optional 'cluster' extra
    from pysfu.app.cluster import AppCluster

__all__ = [
    "HOST_KEY_FAILURES_PER_SECOND",
    "HOST_KEY_FAILURE_BURST",
    "HOST_TICKET_TTL",
    "MAX_ROOM_SIZE",
    "STATIC",
    "USAGE",
    "HostTickets",
    "SfuApp",
    "bearer",
    "cli",
    "consent_timeout",
    "consent_timing",
    "cpu_budget",
    "error",
    "ice_addresses",
    "main",
    "make_server",
    "parse_args",
    "port_range",
    "print_media_addresses",
    "reply",
    "serve",
    "setup_logging",
    "too_many_attempts",
]

STATIC = Path(__file__).resolve().parent / "static"
MAX_ROOM_SIZE = 50
#: Seconds the single-use host link of a new room stays valid.
HOST_TICKET_TTL = 600.0
#: Wrong host keys one client address may present: a burst, then one a second.
HOST_KEY_FAILURES_PER_SECOND = 1.0
HOST_KEY_FAILURE_BURST = 10

logger = logging.getLogger("pysfu.app")


def port_range(text: str) -> tuple[int, int]:
    """``LO-HI`` (inclusive) as a tuple; argparse shows the error."""
    low, dash, high = text.partition("-")
    try:
        if not dash:
            raise ValueError
        ports = (int(low), int(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO-HI, e.g. 40000-40100, not {text!r}"
        ) from None
    if not 1 <= ports[0] <= ports[1] <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= LO <= HI <= 65535")
    return ports


def cpu_budget(value: str) -> float | None:
    """``--cpu-budget``: a share of one core (0 < share <= 1), or ``off``."""
    if value.strip().lower() == "off":
        return None
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(
            f"{value!r}: a share of one core, over 0 and at most 1, or 'off'"
        )
    return share


def consent_timeout(value: str) -> float:
    """``--consent-timeout``: seconds, at least one consent check interval
    (``IceConfig.consent_interval``, 2 s)."""
    interval = IceConfig.consent_interval
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not interval <= seconds < math.inf:
        raise argparse.ArgumentTypeError(
            f"{value!r}: seconds, at least the {interval:g} s between consent checks"
        )
    return seconds


def consent_timing(timeout: float) -> tuple[float, int]:
    """``IceConfig``'s ``consent_interval`` and ``consent_failures`` for a
    ``--consent-timeout`` of ``timeout`` seconds: checks every 2 s (the
    library's interval), the deadline rounded to whole checks."""
    interval = IceConfig.consent_interval
    return interval, max(1, round(timeout / interval))


def parse_args(
    argv: list[str] | None = None, prog: str | None = None
) -> argparse.Namespace:
    env = os.environ.get

    def listed(name: str) -> list[str]:
        return [v for v in (env(name) or "").split(",") if v]

    parser = argparse.ArgumentParser(
        prog=prog,
        description="pysfu's video room: a WebSocket SFU with its browser client",
        epilog="Each option falls back to the environment variable in brackets.",
    )
    add = parser.add_argument
    add("--bind", default=env("PYSFU_BIND", "127.0.0.1"), help="[PYSFU_BIND]")
    add("--port", type=int, default=int(env("PYSFU_PORT", "8080")), help="[PYSFU_PORT]")
    add(
        "--host-key",
        action="append",
        default=listed("PYSFU_HOST_KEY"),
        help="a key that may create rooms and host them; repeatable "
        "[PYSFU_HOST_KEY, comma-separated]",
    )
    add(
        "--max-participants",
        type=int,
        default=int(env("PYSFU_MAX_PARTICIPANTS", "1")),
        help="participants per room besides the host [PYSFU_MAX_PARTICIPANTS]",
    )
    add("--stun", action="append", default=listed("PYSFU_STUN"), help="[PYSFU_STUN]")
    add(
        "--turn",
        action="append",
        default=listed("PYSFU_TURN"),
        help="TURN URL handed to clients [PYSFU_TURN]",
    )
    add(
        "--turn-username",
        default=env("PYSFU_TURN_USERNAME"),
        help="[PYSFU_TURN_USERNAME]",
    )
    add(
        "--turn-password",
        default=env("PYSFU_TURN_PASSWORD"),
        help="a static TURN password for every client; prefer --turn-secret "
        "[PYSFU_TURN_PASSWORD]",
    )
    add(
        "--turn-secret",
        default=env("PYSFU_TURN_SECRET"),
        help="the TURN server's shared secret (coturn: static-auth-secret): each "
        "client gets its own credentials, valid --turn-ttl seconds "
        "[PYSFU_TURN_SECRET]",
    )
    add(
        "--turn-ttl",
        type=float,
        default=float(env("PYSFU_TURN_TTL", "3600")),
        help="seconds the TURN credentials of a join answer stay valid "
        "[PYSFU_TURN_TTL]",
    )
    add(
        "--ice-address",
        action="append",
        default=listed("PYSFU_ICE_ADDRESS"),
        help="local address offered as ICE host candidate; repeatable; default: "
        "every interface but loopback, or 127.0.0.1 if there is none "
        "[PYSFU_ICE_ADDRESS, comma-separated]",
    )
    add(
        "--ice-ports",
        type=port_range,
        default=env("PYSFU_ICE_PORTS"),
        metavar="LO-HI",
        help="UDP port range for media (ICE), e.g. 40000-40100, for a firewall "
        "or a container publishing that range; one port per connection; "
        "default: any [PYSFU_ICE_PORTS]",
    )
    add(
        "--ice-udp-port",
        type=int,
        default=int(env("PYSFU_ICE_UDP_PORT", "-1")),
        help="one UDP port for every peer's ICE and media (0: any free one; "
        "the port to publish from a container); default -1: a port per "
        "connection [PYSFU_ICE_UDP_PORT]",
    )
    add(
        "--announced-address",
        default=env("PYSFU_ANNOUNCED_ADDRESS"),
        help="public address written into host candidates (1:1 NAT) "
        "[PYSFU_ANNOUNCED_ADDRESS]",
    )
    add(
        "--slug",
        choices=("emoji", "ascii"),
        default=env("PYSFU_SLUG", "emoji"),
        help="room link style [PYSFU_SLUG]",
    )
    add(
        "--credential-ttl",
        type=float,
        default=float(env("PYSFU_CREDENTIAL_TTL", "30")),
        help="seconds a join credential stays valid [PYSFU_CREDENTIAL_TTL]",
    )
    add(
        "--pending-hold",
        type=float,
        default=float(env("PYSFU_PENDING_HOLD", "10")),
        help="seconds an admitted participant holds its seat before opening "
        "its WebSocket [PYSFU_PENDING_HOLD]",
    )
    add(
        "--allowed-origin",
        action="append",
        default=listed("PYSFU_ALLOWED_ORIGIN"),
        help="origin of pages allowed to open the WebSocket, e.g. "
        "https://meet.example.org; repeatable; default: this server's own "
        "[PYSFU_ALLOWED_ORIGIN, comma-separated]",
    )
    add(
        "--reconnect-grace",
        type=float,
        default=float(env("PYSFU_RECONNECT_GRACE", "15")),
        help="seconds a participant whose WebSocket dropped keeps its seat and "
        "media, waiting for it to reconnect [PYSFU_RECONNECT_GRACE]",
    )
    add(
        "--host-grace",
        type=float,
        default=float(env("PYSFU_HOST_GRACE", "30")),
        help="seconds a room stays open after its host went away without "
        "ending the call (a reload, a lost connection): the host's page comes "
        "back as host; 0: the room closes at once [PYSFU_HOST_GRACE]",
    )
    add(
        "--guest-grace",
        type=float,
        default=float(env("PYSFU_GUEST_GRACE", "30")),
        help="seconds a guest that went without hanging up (a reload, a lost "
        "connection) keeps its seat against newcomers: its page comes back "
        "with the join answer's seat_rejoin; 0: its seat is free at once "
        "[PYSFU_GUEST_GRACE]",
    )
    add(
        "--room-idle-timeout",
        type=float,
        default=float(env("PYSFU_ROOM_IDLE_TIMEOUT", "60")),
        help="seconds after which a room without a host (or without anyone) "
        "is closed [PYSFU_ROOM_IDLE_TIMEOUT]",
    )
    add(
        "--cpu-budget",
        type=cpu_budget,
        default=cpu_budget(env("PYSFU_CPU_BUDGET", "0.5")),
        help="share of one core a participant may make the server spend on its "
        "signalling, data, candidates and RTCP over 10 s before it is removed "
        "(reason cpu_budget); 'off' measures without removing [PYSFU_CPU_BUDGET]",
    )
    add(
        "--consent-timeout",
        type=consent_timeout,
        default=consent_timeout(
            env(
                "PYSFU_CONSENT_TIMEOUT",
                f"{IceConfig.consent_interval * IceConfig.consent_failures:g}",
            )
        ),
        metavar="SECONDS",
        help="seconds a peer that answers no ICE consent check (it vanished: "
        "killed, unplugged) keeps its seat before it is removed; time the "
        "server itself was stalled does not count; at least 2 (one check "
        "interval) [PYSFU_CONSENT_TIMEOUT]",
    )
    add(
        "--max-rooms",
        type=int,
        default=int(env("PYSFU_MAX_ROOMS", "1000")),
        help="rooms this server holds at most [PYSFU_MAX_ROOMS]",
    )
    add(
        "--workers",
        type=int,
        default=int(env("PYSFU_WORKERS", "0")),
        help="worker processes to spread the rooms over (one core each), "
        "/metrics adding up all of them; 0: every room in this process "
        "[PYSFU_WORKERS]",
    )
    add(
        "--metrics-address",
        default=env("PYSFU_METRICS_ADDRESS"),
        help="HOST:PORT of a separate listener serving /metrics only (keep it "
        "private, e.g. 127.0.0.1:9100) [PYSFU_METRICS_ADDRESS]",
    )
    add(
        "--metrics-token",
        default=env("PYSFU_METRICS_TOKEN"),
        help="serve /metrics on the main listener too, to requests with "
        "'Authorization: Bearer <token>'; without this or --metrics-address "
        "/metrics is not served [PYSFU_METRICS_TOKEN]",
    )
    add(
        "--max-connections",
        type=int,
        default=int(env("PYSFU_MAX_CONNECTIONS", "4096")),
        help="open HTTP/WebSocket connections at most (never more than half "
        "the file descriptor limit) [PYSFU_MAX_CONNECTIONS]",
    )
    add(
        "--idle-timeout",
        type=float,
        default=float(env("PYSFU_IDLE_TIMEOUT", "10")),
        help="seconds a new connection has to send its first request (headers "
        "complete) before it is closed "
        "[PYSFU_IDLE_TIMEOUT]",
    )
    add(
        "--redis",
        default=env("PYSFU_REDIS"),
        metavar="URL",
        help="run as one node of a cluster whose directory is this Redis, e.g. "
        "redis://10.0.0.5:6379/0; needs --node-url and the 'cluster' extra "
        "[PYSFU_REDIS]",
    )
    add(
        "--node-url",
        default=env("PYSFU_NODE_URL"),
        metavar="URL",
        help="where browsers reach this node, e.g. https://sfu2.example.org: "
        "joins for its rooms are redirected there [PYSFU_NODE_URL]",
    )
    add(
        "--node-ttl",
        type=float,
        default=float(env("PYSFU_NODE_TTL", "10")),
        help="seconds a cluster node stays live without a heartbeat: a dead "
        "node's rooms are re-homed after it, and can be for 3 times as long "
        "[PYSFU_NODE_TTL]",
    )
    add(
        "--record-dir",
        default=env("PYSFU_RECORD_DIR"),
        metavar="DIR",
        help="let hosts record their rooms into DIR and download the "
        "recordings; default: no recording [PYSFU_RECORD_DIR]",
    )
    add(
        "--record-mode",
        choices=RECORD_MODES,
        default=env("PYSFU_RECORD_MODE", "live"),
        help="live (default): each participant's WebM is muxed during the "
        "call, ready at the stop and playable up to a crash; raw: raw RTP "
        "kept and converted at the stop [PYSFU_RECORD_MODE]",
    )
    add(
        "--record-keep-days",
        type=float,
        default=_optional_float(env("PYSFU_RECORD_KEEP_DAYS")),
        metavar="DAYS",
        help="remove recordings older than DAYS, at start-up and hourly; "
        "default: kept [PYSFU_RECORD_KEEP_DAYS]",
    )
    add(
        "--record-max-gb",
        type=float,
        default=_optional_float(env("PYSFU_RECORD_MAX_GB")),
        metavar="GB",
        help="remove the oldest recordings beyond GB in all, at start-up "
        "and hourly; default: no limit [PYSFU_RECORD_MAX_GB]",
    )
    add("--log-level", default=env("PYSFU_LOG_LEVEL", "INFO"), help="[PYSFU_LOG_LEVEL]")
    add("--simulcast", action="store_true", help="receive simulcast (rids q, h, f)")
    add(
        "--no-transport-cc",
        dest="transport_cc",
        action="store_false",
        help="do not negotiate transport-wide congestion control: publishers "
        "are then held to pysfu's own estimate of their uplink (REMB) instead "
        "of estimating it themselves from pysfu's feedback",
    )
    add(
        "--simulcast-min-fps",
        type=float,
        default=float(env("PYSFU_SIMULCAST_MIN_FPS", "10")),
        metavar="FPS",
        help="pass over a simulcast layer under FPS frames a second while a "
        "lower one runs 1.5 times faster; 0: choose by bitrate only "
        "[PYSFU_SIMULCAST_MIN_FPS]",
    )
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    if args.simulcast_min_fps < 0:
        parser.error("--simulcast-min-fps must be 0 or more")
    if args.host_grace < 0:
        parser.error("--host-grace must be 0 or more")
    if args.guest_grace < 0:
        parser.error("--guest-grace must be 0 or more")
    if args.ice_udp_port >= 0 and args.stun:
        parser.error("--ice-udp-port offers host candidates only: no --stun")
    if args.ice_udp_port > 0 and args.workers > 0:
        parser.error("--ice-udp-port with --workers: 0 (each worker picks one)")
    if args.ice_udp_port >= 0 and args.ice_ports is not None:
        parser.error("--ice-udp-port or --ice-ports, not both")
    if bool(args.redis) != bool(args.node_url):
        parser.error("--redis and --node-url go together: give both or neither")
    if args.node_url and not args.node_url.startswith(("http://", "https://")):
        parser.error("--node-url must start with http:// or https://")
    for days_or_gb in (args.record_keep_days, args.record_max_gb):
        if days_or_gb is not None and days_or_gb <= 0:
            parser.error("--record-keep-days and --record-max-gb must be above 0")
    return args


def _optional_float(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def reply(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


def error(status: int, code: str, message: str) -> web.Response:
    return reply({"error": code, "message": message}, status=status)


def too_many_attempts() -> web.Response:
    response = error(429, "rate_limited", "too many wrong host keys; slow down")
    response.headers["Retry-After"] = "1"
    return response


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class HostTickets:
    """Single-use, short-lived tickets that let a room's creator join it as
    host without the long-lived host key: the ``host_url`` of a new room
    carries one in its fragment (``#ticket=``), which browsers do not send
    to servers, so it stays out of access logs. Kept as digests; bounded."""

    MAX_TICKETS = 10_000

    def __init__(self, ttl: float = HOST_TICKET_TTL) -> None:
        self.ttl = ttl
        self._tickets: dict[bytes, tuple[str, float]] = {}

    def issue(self, room_id: str) -> str:
        now = time.monotonic()
        for digest, (_, expires) in list(self._tickets.items()):
            if expires <= now:
                del self._tickets[digest]
        while len(self._tickets) >= self.MAX_TICKETS:  # oldest first
            del self._tickets[next(iter(self._tickets))]
        ticket = secrets.token_urlsafe(24)
        self._tickets[_sha256(ticket)] = (room_id, now + self.ttl)
        return ticket

    def valid(self, ticket: str | None, room_id: str) -> bool:
        """Whether ``ticket`` opens ``room_id`` as host (it is not spent)."""
        found = self._tickets.get(_sha256(ticket or ""))
        return found is not None and found[0] == room_id and found[1] > time.monotonic()

    def spend(self, ticket: str | None) -> None:
        self._tickets.pop(_sha256(ticket or ""), None)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _total(cluster: AppCluster, field: str) -> float:
    """One of the cluster's totals, as its last refresh saw it (for /metrics:
    synchronous, no Redis call)."""
    return float(getattr(cluster.totals, field))


class SfuApp:
    """The HTTP join backend, the WebSocket endpoint and the static client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.generated_key = None if args.host_key else secrets.token_urlsafe(18)
        self.host_keys = HostKeys(args.host_key or [self.generated_key])
        self.host_tickets = HostTickets()
        #: digests of each room's current host rejoin credential (single
        #: node; a cluster keeps them in Redis): a host's page that reloads
        #: joins as host again with it, for as long as the room exists
        self.host_rejoins: dict[str, bytes] = {}
        self.host_key_failures = ClientLimits(
            HOST_KEY_FAILURES_PER_SECOND, HOST_KEY_FAILURE_BURST
        )
        stun = tuple(IceServer(urls=url) for url in args.stun)
        turn = tuple(
            IceServer(
                urls=url, username=args.turn_username, credential=args.turn_password
            )
            for url in args.turn
        )
        # The server itself only needs STUN (to learn a public address); TURN
        # is for clients that cannot reach it directly.
        self.client_ice_servers = stun + turn
        self.ice_addresses = ice_addresses(args.ice_address)
        consent_interval, consent_failures = consent_timing(args.consent_timeout)
        config = SFUConfig(
            ice=IceConfig(
                host_addresses=self.ice_addresses,
                announced_address=args.announced_address,
                servers=stun,
                port_range=args.ice_ports,
                shared_port=args.ice_udp_port if args.ice_udp_port >= 0 else None,
                consent_interval=consent_interval,
                consent_failures=consent_failures,
            ),
            limits=LimitsConfig(
                max_rooms=args.max_rooms,
                room_idle_timeout=args.room_idle_timeout,
                host_grace=args.host_grace,
                guest_grace=args.guest_grace,
                cpu_budget=args.cpu_budget,
            ),
            forwarding=ForwardingConfig(
                simulcast=args.simulcast,
                simulcast_policy=SimulcastPolicy(min_fps=args.simulcast_min_fps),
                transport_cc=args.transport_cc,
            ),
        )
        #: the in-process SFU, when the rooms are in this process: recordings
        #: and the cluster work on its Room objects
        self.sfu: SFU | None = None
        # --8<-- [start:rooms]
        # rooms in worker processes (one per core) or in this process: the
        # rest of the app is written once, against the Rooms API
        #: the hosts' recordings (--record-dir), if allowed: listed, served,
        #: pruned here; recorded where the rooms are
        self.recordings = (
            AppRecordings(
                Path(args.record_dir).resolve(),  # the same for every worker
                mode=args.record_mode,
                keep_days=args.record_keep_days,
                max_bytes=None
                if args.record_max_gb is None
                else int(args.record_max_gb * 1e9),
            )
            if args.record_dir is not None
            else None
        )
        self.rooms: Rooms[SessionParticipant]
        if args.workers:
            # started on app startup; each worker attaches its own copy of
            # the recordings (their settings) to the rooms it creates
            self.rooms = WorkerPool(args.workers, config, room_hook=self.recordings)
        else:
            self.sfu = SFU(config)
            self.rooms = self.sfu.as_rooms()
        self.admission = Admission(
            self.rooms,
            credential_ttl=args.credential_ttl,
            pending_hold=args.pending_hold,
        )
        self._pruning: asyncio.Task[None] | None = None
        self._recovering: set[asyncio.Task[list[Path]]] = set()
        #: digests of the tokens handed to hosts to list a room's recordings
        self.recording_tokens: dict[str, bytes] = {}
        #: this node's membership of a cluster (--redis), if any
        self.cluster: AppCluster | None = None
        if args.redis:
            try:  # here, not at the top: redis is an optional extra
                from pysfu.app.cluster import AppCluster
            except ImportError as exc:
                raise ValueError(
                    "--redis needs the cluster extra: pip install 'pysfu[cluster]'"
                ) from exc
            held: SFU | WorkerPool
            if self.sfu is not None:
                held = self.sfu
            else:
                assert isinstance(self.rooms, WorkerPool)
                held = self.rooms
            self.cluster = AppCluster(
                args.redis, args.node_url, held, ttl=args.node_ttl
            )
            # rooms other nodes place here are created as a re-homed one is
            self.cluster.on_room_placed = self.take_up
        #: one creation at a time of a room taken up here (a join and the
        #: heartbeat that finds a placed room may race for it)
        self._taking_up: dict[str, asyncio.Lock] = {}
        self.signalling = WebSocketSignalling(
            self.admission,
            allowed_origins=args.allowed_origin or None,
            reconnect_grace=args.reconnect_grace,
        )
        # --8<-- [end:rooms]

    def application(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/new", self.page),
                web.get("/r/{slug}", self.page),
                web.post("/api/rooms", self.create_room),
                web.post("/api/rooms/{room}/join", self.join),
                web.options("/api/rooms/{room}/join", self.join_preflight),
                web.get("/api/rooms/{room}/recordings", self.list_recordings),
                web.get("/api/rooms/{room}/recordings/{name}", self.download),
                web.delete(
                    "/api/rooms/{room}/recordings/{name}", self.delete_recording
                ),
                web.get("/ws/{participant_id}", self.websocket),
                web.static("/static", STATIC),
            ]
        )
        if self.serves_metrics() and self.args.metrics_token:
            app.add_routes([web.get("/metrics", self.metrics_with_token)])
        app.on_startup.append(self.startup)
        app.on_response_prepare.append(self.join_cors)
        app.on_shutdown.append(self.shutdown)
        return app

    async def startup(self, app: web.Application) -> None:
        recordings = self.recordings
        if recordings is not None:
            # before any room: whatever is unfinished was cut short by a crash
            await asyncio.to_thread(recordings.recover)
        if recordings is not None and (
            recordings.keep_days is not None or recordings.max_bytes is not None
        ):
            self._pruning = asyncio.get_running_loop().create_task(
                recordings.keep_pruning(open_rooms=self.worker_rooms)
            )
        if self.cluster is not None:
            await self.cluster.start()  # a Redis that does not answer stops us
            # pages of any node may open this node's WebSocket (a page whose
            # node died rejoins here with its old origin)
            self.signalling.allowed_origins = self.cluster.allowed_origins(
                self.args.allowed_origin
            )
        await self.rooms.start()
        self.rooms.add_listener(self.forget_closed_room)
        self.rooms.add_listener(self.recover_lost_room)
        if isinstance(self.rooms, WorkerPool):
            logger.info(
                "rooms go to %d workers (pids %s)", self.args.workers, self.rooms.pids
            )

    def worker_rooms(self) -> list[str]:
        """The rooms open in worker processes (none in-process: the
        recordings know their own); retention leaves their unfinished
        recordings alone."""
        return list(self.rooms.rooms) if isinstance(self.rooms, WorkerPool) else []

    def serves_metrics(self) -> bool:
        """Whether /metrics is configured (and the `metrics` extra installed)."""
        wanted = self.args.metrics_token or self.args.metrics_address
        if not wanted or prometheus_client is None:
            return False
        if not hasattr(self, "registry"):
            self.registry = prometheus_client.CollectorRegistry()
            self.collector = RoomsCollector(self.rooms)
            self.registry.register(self.collector)
            if self.cluster is not None:
                self.register_cluster_gauges(self.cluster)
        return True

    def register_cluster_gauges(self, cluster: AppCluster) -> None:
        """Per-node gauges, labelled with the node id so that the nodes'
        series stay apart when one Prometheus scrapes them all."""
        node = cluster.node
        admitting = prometheus_client.Gauge(
            "pysfu_cluster_node_admitting",
            "1 while this cluster node admits joins, 0 while it is fenced",
            ["node_id"],
            registry=self.registry,
        )
        admitting.labels(node.id).set_function(lambda: float(node.admitting))
        owned = prometheus_client.Gauge(
            "pysfu_cluster_rooms_owned",
            "Rooms this cluster node owns in Redis",
            ["node_id"],
            registry=self.registry,
        )
        owned.labels(node.id).set_function(lambda: float(len(node.rooms)))
        # cluster totals: from every live node's last heartbeat, as this node's
        # last refresh (every TTL/3) saw them; no label, each node says the same
        totals = {
            "pysfu_cluster_nodes_live": ("Live nodes", "nodes"),
            "pysfu_cluster_rooms_total": ("Rooms", "rooms"),
            "pysfu_cluster_participants_total": ("Participants", "participants"),
        }
        for name, (what, field) in totals.items():
            gauge = prometheus_client.Gauge(
                name,
                f"{what} in the whole cluster, from the live nodes' heartbeats;"
                " the same value on every node (do not sum over nodes)",
                registry=self.registry,
            )
            gauge.set_function(partial(_total, cluster, field))

    def metrics_application(self) -> web.Application | None:
        """The app of the --metrics-address listener, if configured."""
        if not (self.args.metrics_address and self.serves_metrics()):
            return None
        app = web.Application()
        app.add_routes([web.get("/metrics", self.metrics)])
        return app

    async def metrics_with_token(self, request: web.Request) -> web.Response:
        token = bearer(request) or ""
        if not hmac.compare_digest(token.encode(), self.args.metrics_token.encode()):
            return error(401, "unauthorized", "/metrics needs its bearer token")
        return await self.metrics(request)

    async def metrics(self, request: web.Request) -> web.Response:
        await self.collector.refresh()
        body = prometheus_client.generate_latest(self.registry)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def page(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info.get("slug")
        if self.cluster is not None and slug is not None:
            # a room page opens on the room's node: its join and WebSocket
            # are then same-origin requests (a cross-origin redirect of the
            # join would need CORS); the #ticket fragment survives a redirect
            try:
                owner = await self.cluster.elsewhere(slug)
            except PysfuError:
                owner = None  # the page's join gets the error
            if owner is not None:
                raise web.HTTPTemporaryRedirect(owner + request.raw_path)
        return web.FileResponse(STATIC / "index.html")

    def host_key_valid(self, request: web.Request) -> bool | None:
        """Whether the request's bearer token is a host key; ``None``: this
        address guessed wrong too often (answered at once, nothing hashed)."""
        key = bearer(request)
        if key is None:
            return False
        if self.host_key_failures.exhausted(request.remote):
            return None
        if self.host_keys.check(key):
            return True
        self.host_key_failures.allow(request.remote)  # spend one failure
        return False

    async def create_room(self, request: web.Request) -> web.Response:
        valid = self.host_key_valid(request)
        if valid is None:
            return too_many_attempts()
        if not valid:
            return error(401, "unauthorized", "a valid host key is required")
        try:
            body = await json_body(request)
            size = body.get("max_participants", self.args.max_participants)
            style = body.get("slug", self.args.slug)
            if type(size) is not int or not 0 <= size <= MAX_ROOM_SIZE:  # no bool
                raise ValueError(f"max_participants must be 0..{MAX_ROOM_SIZE}")
            if style not in ("emoji", "ascii"):
                raise ValueError("slug must be 'emoji' or 'ascii'")
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        placed_on = None  # the URL of the node it was placed on, if not this one
        ticket = None
        while True:
            slug = emoji_slug() if style == "emoji" else ascii_slug()
            try:
                if self.cluster is not None:
                    # claimed before it exists (two nodes never create one
                    # room) for the least loaded node, which creates it; its
                    # host ticket is kept with the claim, valid on any node
                    ticket = self.host_tickets.issue(slug)
                    home = await self.cluster.place(slug, size, ticket, HOST_TICKET_TTL)
                    if home is None:
                        continue  # another node's room has this id
                    if home != self.cluster.url:
                        room_id, placed_on = slug, home
                        break
                room_id = await self.new_room(slug, size)
                break
            except RoomExists:  # a room of this node: the claim was its own
                continue
            except PysfuError as exc:  # too_many_rooms, node_fenced
                if self.cluster is not None:
                    await self.cluster.release(slug)
                return error(exc.http_status, exc.code, str(exc))
        if placed_on is not None:
            # its node creates it (at its next heartbeat or first join): the
            # links name that node, the creator goes there directly
            base = f"{placed_on}/r/{slug_path(room_id)}"
            logger.info("room %s placed on %s (max %d)", room_id, placed_on, size)
        else:
            if self.cluster is not None:
                self.cluster.release_when_closed(room_id)
            base = f"{public_scheme(request)}://{request.host}/r/{slug_path(room_id)}"
            logger.info("room %s created (max %d participants)", room_id, size)
        if ticket is None:
            ticket = self.host_tickets.issue(room_id)
        return reply(
            {
                "room": room_id,
                # works once, for HOST_TICKET_TTL s: the key itself stays put
                "host_url": f"{base}?role=host#ticket={ticket}",
                "join_url": base,
            },
            status=201,
        )

    async def new_room(self, room_id: str, size: int) -> str:
        room_id = await self.rooms.create_room(
            RoomOptions(room_id, max_participants=size)
        )
        if self.recordings is not None and self.sfu is not None:
            # (a worker's room got the recordings' copy there: the room hook)
            self.recordings.attach(self.sfu.get_room(room_id))
        return room_id

    async def join(self, request: web.Request) -> web.Response:
        try:
            name, role = join_fields(await json_body(request))
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        room_id = request.match_info["room"]
        ticket = None
        host_authorized: bool | None = False
        try:
            if self.cluster is not None:
                owner = await self.cluster.elsewhere(room_id)
                if owner is None:
                    owner = await self.rehome(room_id)
                if owner is not None:
                    # 307 keeps the method and the body: fetch() and aiohttp
                    # follow it with the POST body, one more round trip
                    raise web.HTTPTemporaryRedirect(owner + request.raw_path)
            if role == "host":
                if await self.host_ticket_valid(room_id, bearer(request)) and (
                    await self.ticket_unspent(bearer(request) or "")
                ):
                    ticket, host_authorized = bearer(request), True
                elif self.cluster is not None and (
                    await self.cluster.host_rejoin_valid(room_id, bearer(request))
                ):
                    host_authorized = True  # the host of a room whose node died
                elif self.cluster is None and self.host_rejoin_valid(
                    room_id, bearer(request)
                ):
                    host_authorized = True  # the host's page reloaded
                    await self.replace_host(room_id)
                else:
                    host_authorized = self.host_key_valid(request)
        except PysfuError as exc:  # node_fenced, cluster_unavailable, room_moved
            return error(exc.http_status, exc.code, str(exc))
        if host_authorized is None:
            return too_many_attempts()
        if role == "participant":
            await self.replace_guest(room_id, bearer(request))
        try:
            grant = self.admission.admit(
                room_id,
                role,
                name=name,
                host_authorized=host_authorized,
                client=request.remote,
                # a guest's page back from a reload: its seat, kept for it
                rejoin=bearer(request) if role == "participant" else None,
            )
        except PysfuError as exc:
            return error(exc.http_status, exc.code, str(exc))
        self.host_tickets.spend(ticket)
        if self.cluster is not None:  # signalling and media go to this node
            scheme, _, host = self.cluster.url.partition("://")
            ws_base = f"{'wss' if scheme == 'https' else 'ws'}://{host}"
        else:
            scheme = "wss" if public_scheme(request) == "https" else "ws"
            ws_base = f"{scheme}://{request.host}"
        cluster_fields = await self.cluster_answer(grant.room_id, grant.role.value)
        recording: dict[str, Any] = {"available": self.recordings is not None}
        if self.recordings is not None and grant.role.value == "host":
            recording["token"] = self.recording_token(grant.room_id)
        answer = join_response(
            grant,
            ws_url=f"{ws_base}/ws/{grant.participant_id}",
            expires_in=self.admission.credential_ttl,
            ice_servers=self.ice_servers_for(grant.participant_id),
        )
        # whether the host may record; the host's token lists them
        return reply({**answer, "recording": recording, **cluster_fields})

    async def host_ticket_valid(self, room_id: str, ticket: str | None) -> bool:
        """Whether ``ticket`` is a host ticket of ``room_id``: issued here,
        or (a cluster) by the node that placed the room here."""
        if self.host_tickets.valid(ticket, room_id):
            return True
        return self.cluster is not None and await self.cluster.host_ticket_valid(
            room_id, ticket
        )

    async def take_up(self, room_id: str) -> None:
        """Create here a room another node placed on this one (the heartbeat
        found it; a join may have created it first)."""
        await self.rehome(room_id)

    async def rehome(self, room_id: str) -> str | None:
        """Create here a room whose record names a node that died (it
        outlives it by ``rejoin_within`` s) or this node, where another
        placed it: None once it is here (or if there is nothing to create),
        else the URL of the node that re-homed it first. One at a time per
        room: a join waits for a creation under way, then finds the room."""
        lock = self._taking_up.setdefault(room_id, asyncio.Lock())
        try:
            async with lock:
                return await self._rehome(room_id)
        finally:
            if not lock.locked() and self._taking_up.get(room_id) is lock:
                del self._taking_up[room_id]

    async def _rehome(self, room_id: str) -> str | None:
        assert self.cluster is not None
        size = await self.cluster.orphaned(room_id)
        if size is None:
            return None
        winner = await self.cluster.adopt(room_id)
        if winner is not None:
            return winner
        try:
            await self.new_room(room_id, size)
        except RoomExists:  # a concurrent join re-homed it here first
            return None
        except PysfuError:  # too_many_rooms: give it back to other nodes
            await self.cluster.release(room_id)
            raise
        # its options stay in its record (a claim keeps the other fields)
        self.cluster.release_when_closed(room_id)
        return None

    def issue_host_rejoin(self, room_id: str) -> str:
        """A new host rejoin credential of ``room_id``, replacing the last:
        it lets the host's page join as host again (after a reload, within
        the room's host grace) for as long as the room exists."""
        credential = secrets.token_urlsafe(24)
        while len(self.host_rejoins) >= HostTickets.MAX_TICKETS:  # oldest first
            del self.host_rejoins[next(iter(self.host_rejoins))]
        self.host_rejoins.pop(room_id, None)
        self.host_rejoins[room_id] = _sha256(credential)
        return credential

    def host_rejoin_valid(self, room_id: str, credential: str | None) -> bool:
        """Whether ``credential`` is ``room_id``'s current host rejoin one."""
        expected = self.host_rejoins.get(room_id)
        return (
            credential is not None
            and expected is not None
            and hmac.compare_digest(_sha256(credential), expected)
        )

    def recover_lost_room(self, event: RoomEvent) -> None:
        """A worker process died with a room: what it was recording is
        listed as incomplete now (as at the next start-up)."""
        if (
            self.recordings is None
            or not isinstance(event, RoomClosedEvent)
            or event.reason != WORKER_FAILED
        ):
            return
        recover = partial(self.recordings.recover, event.room_id)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(recover))
        self._recovering.add(task)
        task.add_done_callback(self._recovering.discard)

    def forget_closed_room(self, event: RoomEvent) -> None:
        """A closed room's rejoin credential dies with it (a later room of
        the same id is another room)."""
        if isinstance(event, RoomClosedEvent):
            self.host_rejoins.pop(event.room_id, None)

    async def replace_host(self, room_id: str) -> None:
        """The host rejoins while its previous session still holds the
        host's seat (its page went without a word, and the signalling
        grace runs): that session goes, the room waits for the new one."""
        if self.sfu is None or room_id not in self.sfu.rooms:
            return  # worker rooms: the join is refused until the old one goes
        previous = self.sfu.get_room(room_id).host
        if previous is not None:
            await previous.leave("replaced by the host's rejoin")

    async def replace_guest(self, room_id: str, rejoin: str | None) -> None:
        """A guest rejoins while its previous session still holds its seat
        (its page went without a word, and the signalling grace runs): that
        session goes, its seat kept for this join."""
        holder = self.admission.seat_holder(room_id, rejoin)
        if holder is None or self.sfu is None or room_id not in self.sfu.rooms:
            return  # worker rooms: the seat comes back once the old one goes
        previous = self.sfu.get_room(room_id).members.get(holder)
        if previous is not None:
            await previous.leave("replaced by its rejoin")

    async def cluster_answer(self, room_id: str, role: str) -> dict[str, Any]:
        """The join answer's cluster fields: the other nodes to rejoin
        through if this one dies, and the host's rejoin credential (single
        node: the credential to come back after a reload)."""
        if self.cluster is None:
            if role == "host":
                return {"host_rejoin": self.issue_host_rejoin(room_id)}
            return {}
        fields = self.cluster.answer_fields()
        if role == "host":
            fields["host_rejoin"] = await self.cluster.issue_host_rejoin(room_id)
        return fields

    async def join_preflight(self, request: web.Request) -> web.Response:
        """CORS preflight of a join from a page of another cluster node (that
        node died, the page rejoins here); refused for any other origin."""
        if self.cluster is None:
            return error(405, "method_not_allowed", "no cross-origin joins")
        headers = self.cluster.cors_headers(request.headers.get("Origin"))
        if not headers:
            return error(403, "forbidden_origin", "this origin may not join here")
        return web.Response(status=204, headers=headers)

    async def join_cors(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        """Let a page of another cluster node read a join answer (any status)."""
        if (
            self.cluster is not None
            and request.method == "POST"
            and request.match_info.route.handler == self.join
        ):
            response.headers.update(
                self.cluster.cors_headers(request.headers.get("Origin"))
            )

    def recording_token(self, room_id: str) -> str:
        """A new bearer token that lists and downloads ``room_id``'s
        recordings (a host ticket is spent on joining; the host key may
        never have reached this page). Replaces the room's previous one."""
        token = secrets.token_urlsafe(24)
        while len(self.recording_tokens) >= HostTickets.MAX_TICKETS:  # oldest first
            del self.recording_tokens[next(iter(self.recording_tokens))]
        self.recording_tokens.pop(room_id, None)
        self.recording_tokens[room_id] = _sha256(token)
        return token

    async def may_see_recordings(
        self, request: web.Request, room_id: str
    ) -> web.Response | None:
        """``None`` if the request is the host's (its recording token, or a
        host key), else the error to answer. In a cluster, a room another
        node owns is recorded (and its token issued) there: 307 to it, as
        for a join."""
        if self.recordings is None:
            return error(404, "recording_disabled", "this server does not record")
        if self.cluster is not None:
            try:
                owner = await self.cluster.elsewhere(room_id)
            except PysfuError as exc:  # node_fenced, cluster_unavailable
                return error(exc.http_status, exc.code, str(exc))
            if owner is not None:
                raise web.HTTPTemporaryRedirect(owner + request.raw_path)
        token = bearer(request)
        expected = self.recording_tokens.get(room_id)
        if (
            token is not None
            and expected is not None
            and hmac.compare_digest(_sha256(token), expected)
        ):
            return None
        valid = self.host_key_valid(request)
        if valid is None:
            return too_many_attempts()
        if not valid:
            return error(
                401, "unauthorized", "only the room's host sees its recordings"
            )
        return None

    async def list_recordings(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room"]
        refused = await self.may_see_recordings(request, room_id)
        if refused is not None:
            return refused
        assert self.recordings is not None
        return reply({"recordings": self.recordings.finished(room_id)})

    async def download(self, request: web.Request) -> web.StreamResponse:
        room_id = request.match_info["room"]
        refused = await self.may_see_recordings(request, room_id)
        if refused is not None:
            return refused
        assert self.recordings is not None
        name = request.match_info["name"]
        path = self.recordings.file(room_id, name)  # listed names only
        if path is None:
            return error(404, "not_found", "no such recording")
        return web.FileResponse(
            path,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    async def delete_recording(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room"]
        refused = await self.may_see_recordings(request, room_id)
        if refused is not None:
            return refused
        assert self.recordings is not None
        name = request.match_info["name"]
        # listed names only, as for a download; the file system in a thread
        if not await asyncio.to_thread(self.recordings.delete, room_id, name):
            return error(404, "not_found", "no such recording")
        return web.Response(status=204)

    async def ticket_unspent(self, ticket: str) -> bool:
        """Spend a host ticket cluster-wide (a node's tickets are only valid
        there, but a ticket must never open a room twice, whichever node is
        asked): True the first time. Single node: the local spend suffices."""
        if self.cluster is None:
            return True
        return await self.cluster.spend_once(ticket, HOST_TICKET_TTL)

    def ice_servers_for(self, participant_id: str) -> tuple[IceServer, ...]:
        """The STUN/TURN servers of one join answer: with --turn-secret, TURN
        credentials of this participant's own, valid --turn-ttl seconds."""
        if self.args.turn_secret is None:
            return self.client_ice_servers
        return with_turn_credentials(
            self.client_ice_servers,
            self.args.turn_secret,
            participant_id,
            self.args.turn_ttl,
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        return await self.signalling.handle(
            request, request.match_info["participant_id"]
        )

    async def shutdown(self, app: web.Application) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
        if self.cluster is not None:
            await self.cluster.close()  # its rooms are free for other nodes
        # every room closed (a recording one stopped and converted), every
        # worker process reaped
        await self.rooms.close()
        if self.recordings is not None:
            await self.recordings.drain()
        await asyncio.gather(*self._recovering, return_exceptions=True)


def ice_addresses(configured: list[str]) -> tuple[str, ...]:
    """The addresses media is offered on: those configured, else every
    interface's but loopback, else 127.0.0.1 (said at WARNING: only this
    machine can then join)."""
    if configured:
        return tuple(configured)
    found = default_host_addresses()
    if found:
        return tuple(found)
    logger.warning(
        "no network address but loopback: media (ICE) is offered on 127.0.0.1, "
        "so only browsers on this machine can join; pass --ice-address"
    )
    return ("127.0.0.1",)


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``, with ICE passwords redacted; aioice's
    per-check INFO lines only at DEBUG."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())  # aiortc logs SDP at DEBUG
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("aioice").setLevel(logging.WARNING)


def serve(
    app: web.Application,
    args: argparse.Namespace,
    metrics_app: web.Application | None = None,
) -> None:
    """Run ``app`` on the configured address until SIGINT/SIGTERM.

    Connections are capped and those without a request closed
    (:class:`ConnectionGuard`),
    so that idle clients cannot take every file descriptor; ``metrics_app``
    listens on ``--metrics-address``.
    """
    asyncio.run(_serve(app, args, metrics_app))


async def _serve(
    app: web.Application,
    args: argparse.Namespace,
    metrics_app: web.Application | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # idle keep-alive connections close after 15 s; new ones without a
    # request after --idle-timeout (the guard)
    runner = web.AppRunner(app, shutdown_timeout=5, keepalive_timeout=15)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(
        runner.server,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
    )
    server = await loop.create_server(guard, args.bind, args.port)
    runners = [runner]
    if metrics_app is not None:
        host, _, port = args.metrics_address.rpartition(":")
        metrics_runner = web.AppRunner(metrics_app)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, host or "127.0.0.1", int(port)).start()
        runners.append(metrics_runner)
    try:
        await stop.wait()
    finally:
        server.close()
        for each in reversed(runners):
            await each.cleanup()


def make_server(args: argparse.Namespace) -> SfuApp:
    """:class:`SfuApp` for ``args``; a setting it refuses ends the program
    with the reason (not a traceback)."""
    try:
        return SfuApp(args)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"pysfu: {exc}") from exc


def print_media_addresses(server: SfuApp) -> None:
    ports = server.args.ice_ports
    print(
        f"media (ICE, UDP) on {', '.join(server.ice_addresses)}"
        + (f", ports {ports[0]}-{ports[1]}" if ports else ", any port")
        + (
            f", announced as {server.args.announced_address}"
            if server.args.announced_address
            else ""
        ),
        flush=True,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the app with ``argv`` (the options of ``--help``)."""
    args = parse_args(argv, prog)
    setup_logging(args.log_level)
    server = make_server(args)
    url = f"http://{args.bind}:{args.port}"
    print(f"pysfu SFU on {url}", flush=True)
    print_media_addresses(server)
    if server.generated_key is not None:
        print(f"generated host key: {server.generated_key}", flush=True)
        print(
            f"open this link to create a room: {url}/new#key={server.generated_key}",
            flush=True,
        )
    serve(server.application(), args, server.metrics_application())


USAGE = """usage: pysfu serve [options]   (pysfu serve --help lists them)

Commands:
  serve     run the video room app (http://127.0.0.1:8080 by default)
"""


def cli(argv: list[str] | None = None) -> None:
    """The ``pysfu`` command: ``pysfu serve [options]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        raise SystemExit(0 if argv else 2)
    if argv[0] != "serve":
        raise SystemExit(f"pysfu: unknown command {argv[0]!r}\n{USAGE}")
    main(argv[1:], prog="pysfu serve")


if __name__ == "__main__":
    main()
