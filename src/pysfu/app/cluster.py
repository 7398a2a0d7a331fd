"""The packaged app as one node of a cluster (``pysfu serve --redis URL
--node-url URL``): the glue between its rooms and :class:`ClusterNode`.

Imported only when ``--redis`` is given, so that the ``redis`` package (the
``cluster`` extra) stays optional. See docs/how-to/cluster.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from pysfu import SFU, PysfuError, RoomClosedEvent, RoomEvent
from pysfu.cluster import ClusterNode, NodeFenced

__all__ = ["AppCluster", "ClusterTotals", "ClusterUnavailable"]

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


class AppCluster:
    """The app's rooms (all in ``sfu``) registered in a cluster's Redis.

    Every Redis failure of a join or a room creation comes out as
    :class:`ClusterUnavailable` (HTTP 503), never as a 500.
    """

    def __init__(
        self, redis_url: str, node_url: str, sfu: SFU, ttl: float = 10.0
    ) -> None:
        self.sfu = sfu
        self.node = ClusterNode(
            redis_url,
            url=node_url.rstrip("/"),
            ttl=ttl,
            load=self._load,
            on_room_lost=self._room_lost,
        )
        # tasks of room events (release, close): kept so they are not collected
        self._tasks: set[asyncio.Task[None]] = set()
        #: The cluster's totals, refreshed from Redis every ``ttl / 3`` s; the
        #: last snapshot stays while Redis does not answer. Read by /metrics,
        #: whose callbacks are synchronous and must not wait for Redis.
        self.totals = ClusterTotals()
        self._totals_task: asyncio.Task[None] | None = None
        self._totals_failing = False

    @property
    def url(self) -> str:
        """This node's public URL (``--node-url``), without a trailing slash."""
        return self.node.url

    def _load(self) -> tuple[int, int]:
        rooms = self.sfu.rooms.values()
        return len(rooms), sum(len(room.members) for room in rooms)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room_lost(self, room_id: str) -> None:
        # another node claimed the room while this one was cut off from Redis:
        # the local copy must go, its clients rejoin through any node
        if room_id in self.sfu.rooms:
            self._spawn(self.sfu.close_room(room_id, reason="moved to another node"))

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

    def release_when_closed(self, room_id: str) -> None:
        """Give ``room_id`` up in Redis once it closes here (so that any node
        may create it again)."""

        def on_event(event: RoomEvent) -> None:
            if isinstance(event, RoomClosedEvent):
                self._spawn(self.release(room_id))

        self.sfu.get_room(room_id).add_listener(on_event)

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
