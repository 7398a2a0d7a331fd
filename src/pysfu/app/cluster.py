"""The packaged app as one node of a cluster (``pysfu serve --redis URL
--node-url URL``): the glue between its rooms and :class:`ClusterNode`.

Imported only when ``--redis`` is given, so that the ``redis`` package (the
``cluster`` extra) stays optional. See docs/how-to/cluster.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from pysfu import SFU, PysfuError, RoomClosedEvent, RoomEvent
from pysfu.cluster import ClusterNode, NodeFenced, process_cpu_seconds
from pysfu.workers import WorkerPool

__all__ = ["AppCluster", "ClusterOrigins", "ClusterTotals", "ClusterUnavailable"]

logger = logging.getLogger("pysfu.app")


class ClusterUnavailable(PysfuError):
    """This node cannot tell who owns a room now: it is fenced (cut off from
    Redis for a whole TTL) or Redis did not answer. Try again."""

    code = "node_fenced"
    http_status = 503

    def __init__(self, message: str, code: str = "node_fenced") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClusterTotals:
    """The whole cluster as its live nodes' last heartbeats describe it."""

    nodes: int = 0
    rooms: int = 0
    participants: int = 0


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as browsers send it in ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ClusterOrigins(Collection[str]):
    """The origins whose pages may use this node: those configured
    (``--allowed-origin``) and every node's URL this node has seen live since
    it started (a page whose node died keeps that node's origin: it rejoins
    through another node, cross-origin). A view: it grows with the cluster."""

    def __init__(self, cluster: AppCluster, configured: Collection[str] = ()) -> None:
        self._cluster = cluster
        self._configured = frozenset(configured)

    def _all(self) -> frozenset[str]:
        return self._configured | self._cluster.known_origins

    def __contains__(self, origin: object) -> bool:
        return origin in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._all()))

    def __len__(self) -> int:
        return len(self._all())


class AppCluster:
    """The app's rooms (all in ``rooms``: this process's SFU, or a
    :class:`~pysfu.workers.WorkerPool` whose workers hold them) registered
    in a cluster's Redis.

    Every Redis failure of a join or a room creation comes out as
    :class:`ClusterUnavailable` (HTTP 503), never as a 500.
    """

    def __init__(
        self,
        redis_url: str,
        node_url: str,
        rooms: SFU | WorkerPool,
        ttl: float = 10.0,
    ) -> None:
        self.rooms = rooms
        self.node = ClusterNode(
            redis_url,
            url=node_url.rstrip("/"),
            ttl=ttl,
            load=self._load,
            on_room_lost=self._room_lost,
            cpu_seconds=self._cpu_seconds,
            on_room_placed=self._room_placed,
            # published: no node places a room on this one once it is full
            max_rooms=rooms.config.limits.max_rooms,
        )
        #: Creates here a room another node placed on this one (the app's
        #: hook: it knows how to create a room); called at the heartbeat that
        #: finds it, unless a join took the room up first.
        self.on_room_placed: Callable[[str], Awaitable[None]] | None = None
        # tasks of room events (release, close): kept so they are not collected
        self._tasks: set[asyncio.Task[None]] = set()
        #: rooms to give up in Redis when they close here (release_when_closed)
        self._releasing: set[str] = set()
        # one listener for every room: a worker's room is no Room object here,
        # its closing comes as an event through the pool
        rooms.add_listener(self._on_event)
        #: The cluster's totals, refreshed from Redis every ``ttl / 3`` s; the
        #: last snapshot stays while Redis does not answer. Read by /metrics,
        #: whose callbacks are synchronous and must not wait for Redis.
        self.totals = ClusterTotals()
        self._totals_task: asyncio.Task[None] | None = None
        self._totals_failing = False
        #: The other live nodes' URLs as the last refresh saw them: listed in
        #: join answers, where a client whose node dies rejoins.
        self.peer_urls: tuple[str, ...] = ()
        #: The origin of every node seen live since this one started (its
        #: own included): pages from there may join here cross-origin.
        self.known_origins: frozenset[str] = frozenset({_origin_of(self.node.url)})

    @property
    def url(self) -> str:
        """This node's public URL (``--node-url``), without a trailing slash."""
        return self.node.url

    def _load(self) -> tuple[int, int]:
        if isinstance(self.rooms, WorkerPool):
            return self.rooms.load()
        rooms = self.rooms.rooms.values()
        return len(rooms), sum(len(room.members) for room in rooms)

    def _cpu_seconds(self) -> float:
        # the pool's process signals; its workers forward the media
        if isinstance(self.rooms, WorkerPool):
            return process_cpu_seconds() + self.rooms.cpu_seconds()
        return process_cpu_seconds()

    def _has_room(self, room_id: str) -> bool:
        return room_id in self.rooms.rooms

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room_lost(self, room_id: str) -> None:
        # another node claimed the room while this one was cut off from Redis:
        # the local copy must go, its clients rejoin through any node
        if self._has_room(room_id):
            self._spawn(self.rooms.close_room(room_id, reason="moved to another node"))

    def _room_placed(self, room_id: str) -> None:
        if self.on_room_placed is not None:
            self._spawn(self._take_up(self.on_room_placed, room_id))

    async def _take_up(
        self, create: Callable[[str], Awaitable[None]], room_id: str
    ) -> None:
        try:
            await create(room_id)
        except Exception:  # a failed take-up must not end silently
            logger.exception("room %s placed here: could not create it", room_id)
            await self.release(room_id)

    async def start(self) -> None:
        """Register this node (raises ``RedisError`` if Redis is unreachable)
        and keep :attr:`totals` fresh."""
        await self.node.start()
        await self.refresh_totals()
        self._totals_task = asyncio.get_running_loop().create_task(self._keep_totals())

    async def close(self) -> None:
        """Release every room and the registration (a clean shutdown)."""
        if self._totals_task is not None:
            # cancelled until it ends, as ClusterNode.close does its heartbeat:
            # a cancellation landing in a Redis call may come out as a
            # RedisError, which the refresh survives
            task = self._totals_task
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            self._totals_task = None
        await self.node.close()
        for task in list(self._tasks):
            task.cancel()

    async def refresh_totals(self) -> bool:
        """Sum what every live node published with its heartbeat into
        :attr:`totals`; returns whether Redis answered (if not, the last
        snapshot stays, and the first failure of a run is logged)."""
        try:
            nodes = await self.node.live_nodes()
        except RedisError as exc:
            if not self._totals_failing:
                self._totals_failing = True
                logger.warning(
                    "cluster totals: Redis did not answer (%s); keeping the"
                    " last ones until it does",
                    exc,
                )
            return False
        if self._totals_failing:
            self._totals_failing = False
            logger.info("cluster totals: Redis answers again")
        self.peer_urls = tuple(n.url for n in nodes if n.id != self.node.id)
        self.known_origins |= {_origin_of(n.url) for n in nodes}
        self.totals = ClusterTotals(
            nodes=len(nodes),
            rooms=sum(n.rooms for n in nodes),
            participants=sum(n.participants for n in nodes),
        )
        return True

    async def _keep_totals(self) -> None:
        while True:
            await asyncio.sleep(self.node.ttl / 3)
            try:
                await self.refresh_totals()
            except Exception:  # the refresh must outlive any one failure
                logger.exception("cluster totals: refresh failed")

    async def claim(self, room_id: str) -> bool:
        """Own ``room_id`` cluster-wide before creating it here: False if
        another live node has it (the id is taken)."""
        try:
            return (await self.node.claim_room(room_id)).mine
        except NodeFenced as exc:
            raise ClusterUnavailable(str(exc)) from exc
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc

    async def place(
        self, room_id: str, max_participants: int, host_ticket: str, ticket_ttl: float
    ) -> str | None:
        """Claim the new room ``room_id`` for the least loaded live node
        (this one on a tie), with what re-creates it (``max_participants``)
        and the digest of its creator's single-use ``host_ticket``, valid on
        any node for ``ticket_ttl`` s. Returns that node's URL
        (:attr:`url` if it is this one: create the room here), or None if
        another live node owns the id already. Raises
        :class:`~pysfu.errors.TooManyRooms` (as a single node does at its
        ``max_rooms``) when every live node holds its ``max_rooms``.

        A node chosen for the room that died meanwhile (its key expired
        between the choice and the claim) is skipped: placed again.
        """
        fields = {
            "max_participants": str(max_participants),
            "host_ticket": _digest(host_ticket),
            "host_ticket_until": f"{time.time() + ticket_ttl:.3f}",
        }
        try:
            for _ in range(3):
                home = await self.node.place_room(room_id)
                claim = await self.node.claim_room_for(room_id, home.id, fields)
                if claim is None:
                    continue  # home died after the choice: choose again
                if not claim.mine:
                    return None  # a live node owns this id already
                return home.url
            claim = await self.node.claim_room_for(room_id, self.node.id, fields)
        except NodeFenced as exc:
            raise ClusterUnavailable(str(exc)) from exc
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        return self.url if claim is not None and claim.mine else None

    async def host_ticket_valid(self, room_id: str, ticket: str | None) -> bool:
        """Whether ``ticket`` is the unexpired host ticket of ``room_id``
        stored with its record when it was placed (on any node; spend it
        with :meth:`spend_once`)."""
        if not ticket:
            return False
        try:
            fields = await self.node.room_fields(room_id)
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        expected = fields.get("host_ticket")
        return (
            expected is not None
            and float(fields.get("host_ticket_until", "0")) > time.time()
            and hmac.compare_digest(_digest(ticket), expected)
        )

    def release_when_closed(self, room_id: str) -> None:
        """Give ``room_id`` up in Redis once it closes here (so that any node
        may create it again); at once if it is gone already."""
        if self._has_room(room_id):
            self._releasing.add(room_id)
        else:
            self._spawn(self.release(room_id))

    def _on_event(self, event: RoomEvent) -> None:
        if isinstance(event, RoomClosedEvent) and event.room_id in self._releasing:
            self._releasing.discard(event.room_id)
            self._spawn(self.release(event.room_id))

    async def release(self, room_id: str) -> None:
        """Give ``room_id`` up now (best effort: its record expires anyway)."""
        try:
            await self.node.release_room(room_id)
        except RedisError:
            logger.warning("room %s: could not release it in Redis", room_id)

    async def elsewhere(self, room_id: str) -> str | None:
        """The URL of the live node that owns ``room_id`` if it is not this
        one; None if this node owns it or nobody does.

        A room held here whose record moved on (``holds`` fails) is refused
        with :class:`ClusterUnavailable`: it is about to be closed here.
        """
        try:
            if not self.node.admitting:
                raise NodeFenced(f"node {self.node.id} is fenced")
            owner = await self.node.owner_of(room_id)
            if owner is not None and owner.id != self.node.id:
                return owner.url
            if room_id in self.node.rooms and not await self.node.holds(room_id):
                raise ClusterUnavailable(
                    f"room {room_id} moved to another node; join again",
                    "room_moved",
                )
        except NodeFenced as exc:
            raise ClusterUnavailable(str(exc)) from exc
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        return None

    async def spend_once(self, secret: str, ttl: float) -> bool:
        """Spend a single-use ``secret`` cluster-wide: True the first time.

        Redis keeps a digest, never the secret itself.
        """
        digest = hashlib.sha256(secret.encode()).hexdigest()
        try:
            return await self.node.consume_once(f"ticket:{digest}", ttl)
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc

    # -- failover: a room outlives its node -----------------------------------

    @property
    def rejoin_within(self) -> float:
        """Seconds a room's record outlives its node's last heartbeat (the
        record's TTL): within them a join through any node re-homes it."""
        return 3 * self.node.ttl

    async def orphaned(self, room_id: str) -> int | None:
        """The ``max_participants`` of ``room_id`` if the room is not here
        and its record names a node that is no longer live (it died), no
        node (the one it was placed on shut down before taking it up), or
        this node, which another placed it on and which has not taken it up
        yet: the room may be created here (:meth:`adopt`). None otherwise."""
        if self._has_room(room_id):
            return None
        try:
            fields = await self.node.room_fields(room_id)
            if "max_participants" not in fields:
                return None
            owner = fields.get("node")
            if owner == self.node.id:
                # placed here by another node; a room of this node's own
                # that just closed is still in node.rooms until released
                if room_id in self.node.rooms:
                    return None
                return int(fields["max_participants"])
            if owner is not None and await self.node.node(owner) is not None:
                return None  # alive: elsewhere() redirects to it
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        return int(fields["max_participants"])

    async def adopt(self, room_id: str) -> str | None:
        """Claim the orphaned ``room_id`` for this node (the next epoch).
        None if it is now this node's (create it here), else the URL of the
        node that won a concurrent re-homing (redirect there)."""
        try:
            claim = await self.node.claim_room(room_id)
            if claim.mine:
                logger.info("room %s taken up here (epoch %d)", room_id, claim.epoch)
                return None
            winner = await self.node.node(claim.owner)
        except NodeFenced as exc:
            raise ClusterUnavailable(str(exc)) from exc
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        if winner is None:  # won and died at once: the client tries again
            raise ClusterUnavailable(
                f"room {room_id} is moving; join again", "room_moved"
            )
        return winner.url

    async def issue_host_rejoin(self, room_id: str) -> str | None:
        """A new host rejoin credential of ``room_id`` (replacing the last
        one): it authorizes a host join of this room on any node for as long
        as the room exists. Redis keeps its digest, with the room's record,
        so it dies with the room. None if it could not be stored."""
        credential = secrets.token_urlsafe(24)
        try:
            stored = await self.node.set_room_fields(
                room_id, {"host_rejoin": _digest(credential)}
            )
        except RedisError:
            stored = False
        if not stored:
            logger.warning("room %s: no host rejoin credential stored", room_id)
            return None
        return credential

    async def host_rejoin_valid(self, room_id: str, credential: str | None) -> bool:
        """Whether ``credential`` is ``room_id``'s current host rejoin
        credential (and the room still exists somewhere)."""
        if not credential:
            return False
        try:
            expected = (await self.node.room_fields(room_id)).get("host_rejoin")
        except RedisError as exc:
            raise ClusterUnavailable(str(exc), "cluster_unavailable") from exc
        return expected is not None and hmac.compare_digest(
            _digest(credential), expected
        )

    def allowed_origins(self, configured: Collection[str] = ()) -> ClusterOrigins:
        """The origins allowed to open this node's WebSocket: ``configured``
        and every node's (see :class:`ClusterOrigins`)."""
        return ClusterOrigins(self, configured)

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """CORS headers that let a page of another node of the cluster join
        here (its own node died); none for any other origin."""
        if origin is None or origin not in self.known_origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    def answer_fields(self) -> dict[str, Any]:
        """What every join answer says of the cluster: where to rejoin if
        this node dies, and for how long the room can be re-homed."""
        return {
            "cluster": {
                "nodes": list(self.peer_urls),
                "rejoin_within": self.rejoin_within,
            }
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
