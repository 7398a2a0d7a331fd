"""ICE: credentials the application chooses, host and announced addresses,
ICE-lite and consent timing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import ipaddress
import logging
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aioice
import aioice.candidate
import aioice.ice
import aioice.stun
import aioice.turn
from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
)

from .. import accounting
from .._slots import SLOT, sleep_slotted
from . import udpmux, udpsock
from .transports import _dtls_transports, meter_dtls_receive

logger = logging.getLogger(__name__)


def configure_ice(
    pc: RTCPeerConnection,
    *,
    username_fragment: str | None = None,
    password: str | None = None,
    host_addresses: Iterable[str] | None = None,
    announced_address: str | None = None,
    lite: bool = False,
    port_range: tuple[int, int] | None = None,
    shared_port: int | None = None,
) -> None:
    """Configure the server side ICE agent(s) of ``pc`` before gathering.

    - ``username_fragment``/``password``: the local ICE credentials. A peer
      must know the password to complete ICE (its connectivity checks are
      authenticated with it), which makes it usable as a join capability.
    - ``host_addresses``: the local addresses offered as host candidates;
      ``None`` keeps aioice's choice (every interface except loopback).
    - ``announced_address``: written into host candidates instead of the
      local address, for servers behind a 1:1 NAT.
    - ``port_range``: ``(low, high)``, inclusive: bind each host candidate's
      UDP socket to a free port in this range (see :func:`bind_in_range`).
    - ``lite``: announce ICE-lite (``a=ice-lite``) and stay the *controlled*
      agent even when this side offers, as mediasoup does. A pair is then
      selected only after the peer's nominating check arrives, and that check
      is authenticated with this side's password: a peer that does not know
      the password cannot complete ICE. The agent sends no connectivity
      checks of its own and never switches role (see :func:`_be_lite`): as
      controlling agent it would nominate pairs on its own checks, which only
      prove that the server knows the *peer's* password.
    - ``shared_port``: offer one UDP port shared by every connection (0: one
      the system picks) instead of a socket per connection; requires
      ``lite`` and no STUN/TURN server (see :mod:`pysfu._aiortc.udpmux`).

    Call after the peer connection has its first transceiver and before
    ``setLocalDescription``.
    """
    validate_ice_credentials(username_fragment, password)
    if shared_port is not None and not lite:
        raise ValueError("a shared ICE port needs ICE-lite")
    for dtls in _dtls_transports(pc):
        gatherer = dtls.transport.iceGatherer
        conn = gatherer._connection
        # what the seam's hooks charge CPU time to (see pysfu.accounting)
        conn._pysfu_cpu = accounting.account_of(pc)  # type: ignore[attr-defined]
        meter_dtls_receive(dtls)  # DTLS records and SRTCP, charged to it too
        if username_fragment is not None:
            conn._local_username = username_fragment
        if password is not None:
            conn._local_password = password
        if shared_port is not None:
            if username_fragment is None:
                # routed by it: aioice's 4 random characters would collide
                conn._local_username = secrets.token_hex(8)
            udpmux.attach_connection(conn)
        # always: even by default the sockets are pysfu's, read in batches
        # with STUN first on the server's (ICE-lite) side (see udpsock)
        _override_gathering(
            conn, host_addresses, announced_address, port_range, shared_port, lite
        )
        if lite:
            _announce_lite(dtls.transport, gatherer)
        _limit_remote_candidates(conn)


#: Remote candidates one connection may hold. aioice pairs and re-sorts its
#: whole check list for each one (O(n) per candidate, also once ICE has
#: completed); a browser signals a handful.
MAX_REMOTE_CANDIDATES = 50


class TooManyCandidates(ValueError):
    """The peer signalled more than :data:`MAX_REMOTE_CANDIDATES` candidates."""


async def add_remote_candidate(
    pc: RTCPeerConnection, candidate: RTCIceCandidate
) -> bool:
    """Add a trickled remote candidate; whether it was used.

    Once ICE has completed (or failed) a candidate can change nothing and is
    ignored (``False``). Raises :class:`TooManyCandidates` once the
    connection holds :data:`MAX_REMOTE_CANDIDATES`, and what
    ``RTCPeerConnection.addIceCandidate`` raises.
    """
    transports = _dtls_transports(pc)
    if transports:  # (before the first negotiation aiortc refuses it itself)
        ice_transport = transports[0].transport
        if ice_transport.state not in ("new", "checking"):
            return False  # aiortc would still file it in the remote description
        if len(ice_transport._connection._remote_candidates) >= MAX_REMOTE_CANDIDATES:
            raise TooManyCandidates(f"more than {MAX_REMOTE_CANDIDATES} ICE candidates")
    await accounting.metered(
        accounting.find_account(pc), "candidates", pc.addIceCandidate(candidate)
    )
    return True


def _limit_remote_candidates(conn: aioice.ice.Connection) -> None:
    """Ignore remote candidates once ICE completed or beyond the cap, from SDP
    (an answer can list hundreds) and trickled alike."""
    if getattr(conn, "_pysfu_candidates_limited", False):
        return
    add = conn.add_remote_candidate
    warned: list[bool] = []

    async def add_remote_candidate(remote_candidate: aioice.Candidate | None) -> None:
        if remote_candidate is not None:
            if conn._nominated:
                return  # ICE completed: a new candidate can change nothing
            if len(conn._remote_candidates) >= MAX_REMOTE_CANDIDATES:
                if not warned:
                    warned.append(True)
                    logger.warning(
                        "%s: ignoring remote candidates beyond %d",
                        str(conn),  # a kept record must not keep conn alive
                        MAX_REMOTE_CANDIDATES,
                    )
                return
        await add(remote_candidate)

    conn.add_remote_candidate = add_remote_candidate  # type: ignore[method-assign]
    conn._pysfu_candidates_limited = True  # type: ignore[attr-defined]


def set_consent_timing(pc: RTCPeerConnection, interval: float, failures: int) -> None:
    """Check ICE consent (RFC 7675) every ``interval`` s; close the connection
    once no check has been answered for ``interval * failures`` s.

    aioice checks every 5 s, sends each check once with a 0.5 s timeout and
    gives up after 6 unanswered ones: a peer that vanished without a goodbye
    (killed, unplugged) keeps its seat for about 30 s, while a peer that is
    merely slow (an overloaded machine answering 0.6 s late) is dropped as if
    gone. Here each check is retransmitted (after 0.5 and 1.5 s), any answer
    within the deadline keeps consent, and the checks of every connection
    share the wake-ups of :mod:`pysfu._slots`. Time the server itself was
    stalled (its checker woke up late: a blocked event loop, a stopped
    process) does not count against the peer: a server stalled for 12 s
    drops nobody, while a peer that vanished is still dropped after the
    deadline. Call before the connection starts.
    """
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        conn.query_consent = _consent_checker(conn, interval, interval * failures)  # type: ignore[method-assign,assignment]


#: Retransmissions of each consent check (aioice doubles the timeout each
#: time: sent at 0, 0.5 and 1.5 s, given up at 3.5 s).
CONSENT_RETRANSMISSIONS = 2


def _consent_checker(
    conn: aioice.ice.Connection, interval: float, deadline: float
) -> Callable[[], Awaitable[None]]:
    async def query_consent() -> None:  # replaces aioice's loop
        loop = asyncio.get_running_loop()
        answered = loop.time()

        async def check(pair: Any) -> None:
            nonlocal answered
            # the peer's current credentials: an ICE restart replaces them
            # (see restart_ice), and a check signed with the old ones would
            # go unanswered and cost the peer its consent
            password = conn.remote_password
            if password is None or getattr(conn, "_pysfu_restarting", False):
                return  # between a restart's offer and answer: nothing to sign with
            key = password.encode("utf8")
            request = conn.build_request(pair, nominate=False)
            # unanswered (TransactionError) or unsendable: no consent from it
            with contextlib.suppress(Exception):
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=key,
                    retransmissions=CONSENT_RETRANSMISSIONS,
                )
                answered = loop.time()
                conn._pysfu_consent_answers = consent_answers_of(conn) + 1  # type: ignore[attr-defined]
                conn._pysfu_restart_grace_used = False  # type: ignore[attr-defined]

        checks: set[asyncio.Task[None]] = set()
        try:
            while True:
                delay = interval * (0.8 + 0.4 * random.random())
                wake = loop.time() + delay + SLOT  # sleep_slotted's latest
                await sleep_slotted(delay)
                # Woken late, the server itself was stalled (a blocked loop,
                # a stopped process): the answers it could not read then are
                # not the peer's silence, so the stall does not count.
                answered += max(0.0, loop.time() - wake)
                # a new path or a restart answered since: its own deadline
                answered = max(answered, getattr(conn, "_pysfu_consent_from", 0.0))
                if loop.time() - answered > deadline:
                    logger.info(
                        "ICE consent expired: the peer at %s answered no check "
                        "for %.0f s",
                        ", ".join(
                            f"{p.remote_addr[0]}:{p.remote_addr[1]}"
                            for p in conn._nominated.values()
                        ),
                        deadline,
                    )
                    break
                for pair in list(conn._nominated.values()):
                    task = loop.create_task(check(pair))
                    checks.add(task)
                    task.add_done_callback(checks.discard)
        finally:
            for task in list(checks):
                task.cancel()
        conn._query_consent_task = None  # close() must not cancel us
        await conn.close()

    return query_consent


def _fresh_consent(conn: aioice.ice.Connection) -> None:
    """Start the consent deadline anew (see :func:`set_consent_timing`): the
    peer nominated a new pair (an authenticated check from it), or asked for
    an ICE restart. The outage before (a browser notices a network change
    after 5-7 s) is no reason to drop a peer that is moving: seen on the WAN
    bed, a viewer moved to a new address was dropped just before or 1 s
    after its restart, 10 s after its last answer on the old path.
    """
    with contextlib.suppress(RuntimeError):  # no running loop: nothing checks
        conn._pysfu_consent_from = asyncio.get_running_loop().time()  # type: ignore[attr-defined]


def consent_answers_of(conn: aioice.ice.Connection) -> int:
    """Consent checks of ``conn`` the peer answered (see :func:`consent_answers`)."""
    return int(getattr(conn, "_pysfu_consent_answers", 0))


def consent_answers(pc: RTCPeerConnection) -> int:
    """Consent checks the peer of ``pc`` answered so far (with
    :func:`set_consent_timing`): each one proves the peer accepts the
    credentials in use, e.g. after an ICE restart."""
    for dtls in _dtls_transports(pc):
        return consent_answers_of(dtls.transport.iceGatherer._connection)
    return 0


def _announce_lite(ice_transport: Any, gatherer: Any) -> None:
    conn = gatherer._connection
    conn.ice_controlling = False
    ice_transport._role_set = True  # aiortc would make the offerer controlling
    _be_lite(conn)
    if getattr(gatherer, "_pysfu_lite", False):
        return
    local_parameters = gatherer.getLocalParameters

    def get_local_parameters() -> Any:
        return dataclasses.replace(local_parameters(), iceLite=True)

    gatherer.getLocalParameters = get_local_parameters
    gatherer._pysfu_lite = True


#: The largest ICE tie-breaker: a peer that also claims the controlled role is
#: always answered 487 Role Conflict (RFC 8445 section 7.3.1.1) and has to
#: take control itself; this side never switches.
_LARGEST_TIE_BREAKER = 2**64 - 1


def _be_lite(conn: aioice.ice.Connection) -> None:
    """Make ``conn`` an ICE-lite agent (RFC 8445 section 2.5), not one in name only.

    aioice runs full ICE whatever is announced: it sends its own connectivity
    checks, signed with the *peer's* password, and repairs role conflicts. A
    peer that knows only this side's username fragment could then answer a
    check with 487 Role Conflict, make this side controlling and let it
    nominate a pair on the strength of its own checks, which prove nothing
    about the peer. Here the agent

    - sends no connectivity check of its own (consent checks, see
      :func:`set_consent_timing`, start only on a nominated pair);
    - never changes role: a peer claiming the controlled role too gets 487;
    - marks a pair succeeded only for the address and socket a check *from
      the peer* came from, after aioice authenticated that check with this
      side's password (MESSAGE-INTEGRITY), and nominated only once such a
      check carried USE-CANDIDATE.
    """
    if getattr(conn, "_pysfu_true_lite", False):
        return
    conn._tie_breaker = _LARGEST_TIE_BREAKER
    validated: set[tuple[int, tuple[str, int]]] = set()
    check_incoming = conn.check_incoming

    def check_incoming_authenticated(
        message: aioice.stun.Message, addr: tuple[str, int], protocol: Any
    ) -> None:
        # aioice calls this only for checks that passed USERNAME and
        # MESSAGE-INTEGRITY with the local password (request_received)
        validated.add((id(protocol), (addr[0], addr[1])))
        check_incoming(message, addr, protocol)

    async def check_start(pair: aioice.ice.CandidatePair) -> None:
        # the "triggered check" of a full agent: answered by the peer's own
        # check instead of sending one
        if (id(pair.protocol), pair.remote_addr) not in validated:
            pair.task = None  # not validated by the peer: stays as it is
            return
        conn.check_state(pair, aioice.ice.CandidatePair.State.SUCCEEDED)
        if pair.remote_nominated:
            if conn._nominated.get(pair.component) is not pair:
                _fresh_consent(conn)  # the peer moved here, proving it wants it
            pair.nominated = True
        conn.check_complete(pair)

    def check_periodic() -> bool:
        # connect() starts no checks; it only waits (every 20 ms, as aioice)
        # while there is nothing to wait on yet: no pair and more candidates
        # to come. A check from the peer forms a pair too (peer-reflexive).
        return (
            not conn._check_list
            and not conn._check_list_done
            and conn._remote_candidates_expected()
        )

    def switch_role(ice_controlling: bool) -> None:
        pass  # a lite agent is always controlled

    conn.check_incoming = check_incoming_authenticated  # type: ignore[method-assign]
    conn.check_start = check_start  # type: ignore[method-assign]
    conn._check_periodic = check_periodic  # type: ignore[method-assign]
    conn.switch_role = switch_role  # type: ignore[method-assign]
    conn._pysfu_true_lite = True  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class IceCredentials:
    """A username fragment and password (local or remote)."""

    username_fragment: str
    password: str


def new_ice_credentials() -> IceCredentials:
    """Fresh random ICE credentials: 16 hex characters of username fragment
    (unique enough to route a shared port by), 32 of password (128 bits)."""
    return IceCredentials(secrets.token_hex(8), secrets.token_hex(16))


def local_ice_credentials(pc: RTCPeerConnection) -> IceCredentials | None:
    """The local credentials of ``pc``'s (bundled) ICE agent, if it has one."""
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        return IceCredentials(conn.local_username, conn.local_password)
    return None


def remote_ice_credentials(pc: RTCPeerConnection) -> IceCredentials | None:
    """The peer's credentials as the ICE agent of ``pc`` uses them, if known."""
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        if conn.remote_username is None or conn.remote_password is None:
            return None
        return IceCredentials(conn.remote_username, conn.remote_password)
    return None


def restart_ice(
    pc: RTCPeerConnection, credentials: IceCredentials | None = None
) -> IceCredentials:
    """Give ``pc``'s ICE agent fresh local credentials (an ICE restart, RFC
    8445 section 9), keeping its sockets, candidates, DTLS and SRTP.

    aiortc 1.16 cannot restart ICE. Here the running aioice connection takes
    the new username fragment and password in place: the next offer or
    answer carries them (aiortc reads them from the connection), checks
    signed with the old ones are refused from now on (401), and a shared
    port routes the new fragment instead of the old one. Until the peer's
    new credentials arrive (:func:`follow_remote_ice`), checks carrying the
    new local fragment are accepted whatever the peer's fragment, as before
    a first answer, and no consent check is sent (there is nothing to sign
    it with); the pair in use keeps carrying media meanwhile. The DTLS
    transport is not touched: no new handshake, the SRTP keys stay.

    Returns the new local credentials. Raises ``ValueError`` if ``pc`` has
    no ICE agent yet or ``credentials`` are invalid.
    """
    if credentials is None:
        credentials = new_ice_credentials()
    validate_ice_credentials(credentials.username_fragment, credentials.password)
    transports = _dtls_transports(pc)
    if not transports:
        raise ValueError("the connection has no ICE transport to restart")
    for dtls in transports:
        conn = dtls.transport.iceGatherer._connection
        _accept_any_remote_fragment_while_restarting(conn)
        if udpmux.is_muxed(conn):
            udpmux.rekey_connection(conn, credentials.username_fragment)
        conn._local_username = credentials.username_fragment
        conn._local_password = credentials.password
        conn._pysfu_restarting = True  # type: ignore[attr-defined]
        # Asked over the client's authenticated signalling: it is alive and
        # moving. Its old path has likely been silent for most of the
        # deadline already (a browser notices a change after 5-7 s), so the
        # restart gets a deadline of its own, once until a check is answered
        # again (restarts cannot keep an unanswering path alive).
        if not getattr(conn, "_pysfu_restart_grace_used", False):
            conn._pysfu_restart_grace_used = True  # type: ignore[attr-defined]
            _fresh_consent(conn)
        conn._pysfu_restarts = getattr(conn, "_pysfu_restarts", 0) + 1  # type: ignore[attr-defined]
    return credentials


def ice_credentials_in(sdp: str) -> IceCredentials | None:
    """The first ``a=ice-ufrag``/``a=ice-pwd`` of an SDP (or SDP fragment),
    if it has both (bundled: one transport)."""
    ufrag = _sdp_attribute(sdp, "ice-ufrag")
    pwd = _sdp_attribute(sdp, "ice-pwd")
    if ufrag is None or pwd is None:
        return None
    return IceCredentials(ufrag, pwd)


def follow_remote_ice(pc: RTCPeerConnection, sdp: str) -> bool:
    """Take the peer's ICE credentials from ``sdp`` (a remote description
    just applied, or a WHIP PATCH fragment) if they changed: aiortc reads
    them only once, when ICE starts. Whether they changed (the peer
    restarted ICE, or answered a restart)."""
    found = ice_credentials_in(sdp)
    changed = False
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        if found is None or conn.remote_username is None:
            continue  # not started yet: aiortc takes them itself
        ufrag, pwd = found.username_fragment, found.password
        conn._pysfu_restarting = False  # type: ignore[attr-defined]
        if (ufrag, pwd) != (conn.remote_username, conn.remote_password):
            conn.remote_username = ufrag
            conn.remote_password = pwd
            changed = True
    return changed


def ice_restarts(pc: RTCPeerConnection) -> int:
    """How many times :func:`restart_ice` gave ``pc`` new local credentials."""
    for dtls in _dtls_transports(pc):
        conn = dtls.transport.iceGatherer._connection
        return int(getattr(conn, "_pysfu_restarts", 0))
    return 0


def _sdp_attribute(sdp: str, name: str) -> str | None:
    """The first ``a=name:value`` of ``sdp`` (bundled: one transport)."""
    prefix = f"a={name}:"
    for line in sdp.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _accept_any_remote_fragment_while_restarting(conn: aioice.ice.Connection) -> None:
    """Between a restart's offer and the peer's answer, a check's USERNAME
    ends with the peer's *new* fragment, not known yet: accept any, as
    aioice does before a first answer (the password still authenticates)."""
    if getattr(conn, "_pysfu_restartable", False):
        return
    valid_username = conn._valid_username

    def valid_username_while_restarting(username: str) -> bool:
        if getattr(conn, "_pysfu_restarting", False):
            local, colon, _ = username.partition(":")
            return colon == ":" and local == conn.local_username
        return valid_username(username)

    conn._valid_username = valid_username_while_restarting  # type: ignore[method-assign]
    conn._pysfu_restartable = True  # type: ignore[attr-defined]


def validate_ice_credentials(
    username_fragment: str | None, password: str | None
) -> None:
    """Raise ``ValueError`` unless these are valid ICE credentials (RFC 8839).

    A username fragment is 4-256 and a password 22-256 ice-chars
    (``A-Z a-z 0-9 + /``).
    """
    if username_fragment is not None:
        aioice.ice.validate_username(username_fragment)
    if password is not None:
        aioice.ice.validate_password(password)


def default_host_addresses() -> list[str]:
    """The addresses aioice offers when none are configured: those of every
    interface but loopback (empty on a machine with only loopback)."""
    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))


def _override_gathering(
    conn: aioice.ice.Connection,
    host_addresses: Iterable[str] | None,
    announced_address: str | None,
    port_range: tuple[int, int] | None = None,
    shared_port: int | None = None,
    drained: bool = True,
) -> None:
    if getattr(conn, "_pysfu_gathering", False):
        return
    addresses = list(host_addresses) if host_addresses is not None else None

    async def gather_candidates() -> None:
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        chosen: list[str] = []
        if conn._transport_policy == aioice.ice.TransportPolicy.ALL:
            chosen = (
                addresses
                if addresses is not None
                else aioice.ice.get_host_addresses(
                    use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6
                )
            )
        for component in conn._components:
            if shared_port is not None:
                candidates = await udpmux.shared_host_candidates(
                    conn, component, chosen, shared_port
                )
            else:
                candidates = await _candidates_on_own_sockets(
                    conn, component, chosen, port_range, drained
                )
            if announced_address is not None:
                for candidate in candidates:
                    if candidate.type == "host":
                        candidate.host = announced_address
            conn._local_candidates += candidates
        conn._local_candidates_end = True

    conn.gather_candidates = gather_candidates  # type: ignore[method-assign]
    conn._pysfu_gathering = True  # type: ignore[attr-defined]


class PortRangeExhausted(OSError):
    """Every port of the ICE port range is taken on this address."""


def bind_udp_socket(
    address: str, port_range: tuple[int, int] | None = None
) -> socket.socket:
    """A non-blocking UDP socket bound to ``address``: on any free port, or on
    a free port of ``port_range`` (``(low, high)``, inclusive).

    Ports of a range are tried from a random one onwards, wrapping around, so
    that connections made at the same time do not all race for the lowest
    port. Raises :class:`PortRangeExhausted` when every port is taken.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if port_range is None:
        ports: Iterable[int] = (0,)
    else:
        low, high = port_range
        count = high - low + 1
        start = random.randrange(count)
        ports = (low + (start + offset) % count for offset in range(count))
    for port in ports:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # as aioice: room for a burst while the loop is busy
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE
            )
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and port_range is not None:
                continue
            raise
        except BaseException:
            sock.close()
            raise
        return sock
    assert port_range is not None
    raise PortRangeExhausted(
        errno.EADDRINUSE,
        f"every UDP port of the ICE port range {port_range[0]}-{port_range[1]} "
        f"is taken on {address}: widen IceConfig.port_range (--ice-ports)",
    )


def _same(protocol: aioice.ice.StunProtocol) -> aioice.ice.StunProtocol:
    return protocol


#: How long gathering waits for a STUN server's answer (as aioice).
STUN_GATHERING_TIMEOUT = 5.0


async def _candidates_on_own_sockets(
    conn: aioice.ice.Connection,
    component: int,
    addresses: list[str],
    port_range: tuple[int, int] | None,
    drained: bool = True,
) -> list[aioice.Candidate]:
    """What aioice's ``get_component_candidates`` gathers (host candidates,
    server-reflexive ones from a STUN server, the TURN relay), except that
    each host candidate's socket is bound by pysfu (in ``port_range`` if
    given) and, if ``drained``, read in batches, STUN first (:mod:`.udpsock`);
    otherwise by asyncio, one datagram per loop turn, as aioice does.

    Only the server side drains: an aiortc *client* in the server's process
    (tests, bots) reading in batches too would let both ends of a
    connection hand each other whole bursts in one loop turn, where pacing
    by the turn is what keeps a small data channel buffer from overflowing.
    """
    loop = asyncio.get_running_loop()
    candidates: list[aioice.Candidate] = []
    protocols: list[aioice.ice.StunProtocol] = []
    for address in addresses:
        try:
            sock = bind_udp_socket(address, port_range)
        except OSError as exc:
            logger.warning("no ICE candidate on %s: %s", address, exc)
            continue
        protocol = aioice.ice.StunProtocol(conn)
        host, port = sock.getsockname()[:2]
        if drained:
            udpsock.open_connection_socket(sock, protocol)
        else:
            await loop.create_datagram_endpoint(
                functools.partial(_same, protocol), sock=sock
            )
        candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        protocol.local_candidate = candidate
        conn._protocols.append(protocol)
        candidates.append(candidate)
        protocols.append(protocol)

    stun_server = conn.stun_server

    async def reflexive(protocol: aioice.ice.StunProtocol) -> list[aioice.Candidate]:
        assert stun_server is not None
        with contextlib.suppress(Exception):  # no answer: no srflx candidate
            found, _ = await asyncio.wait_for(
                aioice.ice.server_reflexive_candidate(protocol, stun_server),
                timeout=STUN_GATHERING_TIMEOUT,
            )
            return [found]
        return []

    queries = [
        reflexive(p)
        for p in protocols
        if stun_server and ipaddress.ip_address(p.local_candidate.host).version == 4
    ]
    # the TURN relay (its port is the TURN server's): aioice's own gathering,
    # at the same time as the STUN queries
    found = await asyncio.gather(
        *queries, conn.get_component_candidates(component=component, addresses=[])
    )
    for more in found:
        candidates += more
    return candidates
