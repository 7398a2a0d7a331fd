"""One UDP socket per address for the ICE of every connection (a UDP mux).

aioice binds a socket per connection and asyncio reads one datagram per
socket per loop iteration, so each inbound packet costs a selector wake-up,
and a STUN consent answer waits behind whatever media its socket holds. An
ICE-lite server needs no candidate pairs of its own, so every connection can
share one socket per local address (one UDP port for the whole process, as
LiveKit's UDP mux, mediasoup's ``WebRtcServer`` and pion's ``UDPMux`` do):

- a STUN request goes to the connection whose local username fragment is the
  first part of its ``USERNAME`` (the connection then authenticates it as
  aioice always does);
- everything else goes to the connection that an *authenticated* check came
  from that address for (learned in :func:`attach_connection`); datagrams from
  any other address are dropped and counted: nobody can inject into another
  participant's session from an address that never proved its password;
- on each readiness event every waiting datagram is read (up to
  :data:`MAX_DATAGRAMS_PER_WAKEUP`) and STUN is handled before the media of
  the same batch, so consent answers never queue behind media.

Each connection keeps an aioice ``StunProtocol`` whose transport is a
:class:`MuxedTransport` over the shared socket: aioice's STUN handling,
consent checks and pysfu's receive path stay exactly as with a socket per
connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import weakref
from typing import Any

import aioice
import aioice.ice
import aioice.stun
from aioice.candidate import candidate_foundation, candidate_priority

from .udpsock import enable_kernel_timestamps, read_batch, set_arrival

logger = logging.getLogger(__name__)

#: Datagrams read per readiness event at most; the rest waits for the next
#: loop iteration, so a flood cannot hold the event loop for ever. Large
#: enough for the backlog of 20 rooms of two after a 0.5 s stall.
MAX_DATAGRAMS_PER_WAKEUP = 2048
#: Addresses one connection may be reached from (its candidates that sent an
#: authenticated check); the least recently checked one, never the
#: nominated one, is forgotten beyond it.
MAX_ADDRESSES_PER_CONNECTION = 8
#: Receive buffer requested for a shared socket (every peer's datagrams wait
#: there while the loop is busy); the kernel caps it at ``net.core.rmem_max``
#: unless the process may raise that limit (``CAP_NET_ADMIN``).
SHARED_RECEIVE_BUFFER = 8 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux
_REQUEST = aioice.stun.Class.REQUEST

Address = tuple[str, int]


class MuxedTransport(asyncio.DatagramTransport):
    """One connection's view of a shared socket: what aioice's
    ``StunProtocol`` and pysfu's sender use as its UDP transport."""

    def __init__(
        self, mux: UdpMux, protocol: aioice.ice.StunProtocol, ufrag: str
    ) -> None:
        super().__init__()
        self._mux = mux
        self._protocol = protocol
        self.ufrag = ufrag
        #: the addresses this connection sent authenticated checks from
        self.addresses: dict[Address, None] = {}
        self._closing = False
        #: the shared socket (pysfu's sender writes to it directly)
        self._sock = mux.socket

    def sendto(self, data: Any, addr: Any = None) -> None:
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._mux.drop("send_buffer_full")
        except OSError:
            self._mux.drop("send_error")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._mux.unregister(self)
        # as asyncio does: the protocol learns it on the next iteration
        self._mux.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def deliver(self, data: bytes, addr: Address) -> None:
        self._protocol.datagram_received(data, addr)

    def learn(self, addr: Address) -> None:
        """``addr`` sent a check this connection authenticated."""
        self._mux.learn(self, addr)

    def rekey(self, ufrag: str) -> None:
        """Be reached by checks for ``ufrag`` from now on (an ICE restart)."""
        self._mux.rekey(self, ufrag)

    def nominated_address(self) -> Address | None:
        pair = self._protocol.receiver._nominated.get(1)
        if pair is None or pair.protocol is not self._protocol:
            return None
        return (pair.remote_addr[0], pair.remote_addr[1])


class UdpMux:
    """A shared UDP socket and the table of who is reached through it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.socket = sock
        self.address: Address = sock.getsockname()[:2]
        self._by_ufrag: dict[str, MuxedTransport] = {}
        self._by_address: dict[Address, MuxedTransport] = {}
        #: readiness events handled, datagrams read, of them STUN
        self.wakeups = 0
        self.datagrams = 0
        self.stun = 0
        #: datagrams dropped, by reason (each reason logged once)
        self.dropped: dict[str, int] = {}
        loop.add_reader(sock.fileno(), self._read_ready)

    @property
    def port(self) -> int:
        return self.address[1]

    def ufrags(self) -> set[str]:
        """The local username fragments of the connections on this socket."""
        return set(self._by_ufrag)

    def addresses(self) -> dict[Address, str]:
        """Remote address -> local username fragment of its connection."""
        return {addr: t.ufrag for addr, t in self._by_address.items()}

    def drop(self, reason: str) -> None:
        dropped = self.dropped
        if reason not in dropped:
            logger.warning(
                "shared ICE port %s: dropping datagrams (%s), counted from now",
                self.address,
                reason,
            )
            dropped[reason] = 0
        dropped[reason] += 1

    # -- the table

    def register(self, protocol: aioice.ice.StunProtocol, ufrag: str) -> MuxedTransport:
        if ufrag in self._by_ufrag:
            raise ValueError(
                f"ICE username fragment {ufrag!r} is already in use on the shared port"
            )
        transport = MuxedTransport(self, protocol, ufrag)
        self._by_ufrag[ufrag] = transport
        return transport

    def rekey(self, transport: MuxedTransport, ufrag: str) -> None:
        """Route checks for ``ufrag`` to ``transport`` instead of its old one
        (an ICE restart): checks still carrying the old one are dropped."""
        if ufrag in self._by_ufrag:
            raise ValueError(
                f"ICE username fragment {ufrag!r} is already in use on the shared port"
            )
        if self._by_ufrag.get(transport.ufrag) is transport:
            del self._by_ufrag[transport.ufrag]
        transport.ufrag = ufrag
        self._by_ufrag[ufrag] = transport

    def unregister(self, transport: MuxedTransport) -> None:
        if self._by_ufrag.get(transport.ufrag) is transport:
            del self._by_ufrag[transport.ufrag]
        for addr in transport.addresses:
            if self._by_address.get(addr) is transport:
                del self._by_address[addr]
        transport.addresses.clear()
        if not self._by_ufrag:
            self.close()

    def learn(self, transport: MuxedTransport, addr: Address) -> None:
        if transport.is_closing():
            return
        previous = self._by_address.get(addr)
        if previous is not None and previous is not transport:
            previous.addresses.pop(addr, None)  # the address changed hands
        self._by_address[addr] = transport
        addresses = transport.addresses
        addresses.pop(addr, None)
        addresses[addr] = None  # the most recently checked last
        if len(addresses) > MAX_ADDRESSES_PER_CONNECTION:
            nominated = transport.nominated_address()
            for old in list(addresses):
                if old != nominated and old != addr:
                    del addresses[old]
                    if self._by_address.get(old) is transport:
                        del self._by_address[old]
                    break

    def close(self) -> None:
        _forget(self)
        self.loop.remove_reader(self.socket.fileno())
        self.socket.close()

    # -- reading

    def _read_ready(self) -> None:
        stun, media = read_batch(
            self.socket,
            MAX_DATAGRAMS_PER_WAKEUP,
            lambda exc: self.drop("socket_error"),  # ICMP for an earlier send
        )
        self.wakeups += 1
        self.datagrams += len(stun) + len(media)
        self.stun += len(stun)
        by_address = self._by_address
        try:
            for data, addr, arrival in stun:  # consent answers first
                set_arrival(arrival)
                self._dispatch_stun(data, addr)
            for data, addr, arrival in media:
                transport = by_address.get(addr)
                if transport is None:
                    self.drop("unknown_address")
                    continue
                set_arrival(arrival)
                try:
                    transport.deliver(data, addr)
                except Exception:
                    self._handler_failed()
        finally:
            set_arrival(None)

    def _dispatch_stun(self, data: bytes, addr: Address) -> None:
        try:
            message = aioice.stun.parse_message(data)
        except ValueError:
            self.drop("not_stun")
            return
        if message.message_class == _REQUEST:
            username = message.attributes.get("USERNAME")
            if not isinstance(username, str):
                self.drop("stun_without_username")
                return
            transport = self._by_ufrag.get(username.split(":", 1)[0])
            if transport is None:
                self.drop("unknown_ufrag")
                return
        else:  # answers to this side's checks: from a learned address
            found = self._by_address.get(addr)
            if found is None:
                self.drop("unknown_address")
                return
            transport = found
        try:
            transport.deliver(data, addr)
        except Exception:
            self._handler_failed()

    def _handler_failed(self) -> None:
        if "handler_error" not in self.dropped:
            logger.exception(
                "shared ICE port %s: a datagram handler failed", self.address
            )
        self.drop("handler_error")


# one mux per (event loop, local address); port 0 picks one port for all
_MUXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, UdpMux]] = (
    weakref.WeakKeyDictionary()
)


def udp_muxes() -> list[UdpMux]:
    """The shared sockets open in the running event loop."""
    return list(_MUXES.get(asyncio.get_running_loop(), {}).values())


def _forget(mux: UdpMux) -> None:
    muxes = _MUXES.get(mux.loop, {})
    if muxes.get(mux.address[0]) is mux:
        del muxes[mux.address[0]]


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        enable_kernel_timestamps(sock)
        try:  # above net.core.rmem_max if allowed (Linux, CAP_NET_ADMIN)
            if not sys.platform.startswith("linux"):
                raise OSError
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, SHARED_RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SHARED_RECEIVE_BUFFER)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def mux_for(address: str, port: int) -> UdpMux:
    """The shared socket of ``address`` in the running loop, bound on first use
    to ``port`` (0: the port the other addresses use, or any)."""
    loop = asyncio.get_running_loop()
    muxes = _MUXES.setdefault(loop, {})
    mux = muxes.get(address)
    if mux is None:
        if port == 0 and muxes:
            try:
                sock = _bind(address, next(iter(muxes.values())).port)
            except OSError:
                sock = _bind(address, 0)
        else:
            sock = _bind(address, port)
        mux = muxes[address] = UdpMux(loop, sock)
    return mux


async def shared_host_candidates(
    conn: aioice.ice.Connection, component: int, addresses: list[str], port: int
) -> list[aioice.Candidate]:
    """Host candidates of ``conn`` on the shared socket of each address, in
    place of aioice's ``get_component_candidates`` (which binds a socket per
    connection and queries STUN/TURN servers: see :func:`attach_connection`)."""
    candidates = []
    for address in addresses:
        try:
            mux = mux_for(address, port)
        except OSError as exc:
            logger.warning("cannot bind the shared ICE port on %s: %s", address, exc)
            continue
        protocol = aioice.ice.StunProtocol(conn)
        protocol.connection_made(mux.register(protocol, conn.local_username))
        host, bound_port = mux.address
        protocol.local_candidate = aioice.Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=bound_port,
            type="host",
        )
        conn._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates


def attach_connection(conn: aioice.ice.Connection) -> None:
    """Route a connection's media by the addresses it authenticated.

    A STUN check that carries this connection's username fragment and
    passes MESSAGE-INTEGRITY with its password (as aioice then checks again)
    makes its source address reach this connection, and a new nominated
    pair's address is learned from the nominating check. The address is
    learned as the check arrives, not once aioice processes it: aioice
    defers checks that come before it has the peer's answer, and the peer's
    DTLS handshake follows the answer to such a check at once. A shared
    socket serves only this server's own host candidates: STUN and TURN
    servers are refused, as the server would need a reflexive or relayed
    address per connection.
    """
    if getattr(conn, "_pysfu_muxed", False):
        return
    if conn.stun_server is not None or conn.turn_server is not None:
        raise ValueError(
            "a shared ICE port offers host candidates only: configure no STUN/TURN "
            "server for the server itself (announce its public address instead)"
        )
    request_received = conn.request_received

    def learn_then_answer(
        message: aioice.stun.Message, addr: Address, protocol: Any
    ) -> None:
        transport = protocol.transport
        if isinstance(transport, MuxedTransport) and _authenticated(conn, message):
            transport.learn((addr[0], addr[1]))
        request_received(message, addr, protocol)

    conn.request_received = learn_then_answer  # type: ignore[method-assign]
    conn._pysfu_muxed = True  # type: ignore[attr-defined]


def rekey_connection(conn: aioice.ice.Connection, ufrag: str) -> None:
    """The shared sockets of ``conn`` route its new username fragment
    ``ufrag`` (an ICE restart) and no longer its old one. The addresses it
    authenticated stay routed to it until checks with the new credentials
    teach others."""
    for protocol in conn._protocols:
        transport = protocol.transport
        if isinstance(transport, MuxedTransport):
            transport.rekey(ufrag)


def is_muxed(conn: aioice.ice.Connection) -> bool:
    """Whether ``conn`` receives on a shared socket (:func:`attach_connection`)."""
    return bool(getattr(conn, "_pysfu_muxed", False))


def _authenticated(conn: aioice.ice.Connection, message: aioice.stun.Message) -> bool:
    username = message.attributes.get("USERNAME")
    return (
        message.message_method == aioice.stun.Method.BINDING
        and "MESSAGE-INTEGRITY" in message.attributes
        and isinstance(username, str)
        and username.startswith(conn.local_username + ":")
        and message.check_message_integrity(conn.local_password.encode("utf8"))
    )
