"""One pysfu process as a node of a cluster whose directory is Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import TooManyRooms
from .scripts import (
    CLAIM_ROOM,
    HAND_BACK_PLACED,
    PLACE_ROOM,
    REFRESH_ROOM,
    RELEASE_ROOM,
    SET_ROOM_FIELDS,
    TAKE_PLACED,
)

__all__ = [
    "CPU_MARGIN",
    "Claim",
    "ClusterNode",
    "NodeFenced",
    "NodeInfo",
    "process_cpu_seconds",
]

logger = logging.getLogger(__name__)

#: Share of a core by which the node asked to place a room may be busier
#: than the coolest of the nodes tied with it and still keep the room.
CPU_MARGIN = 0.5


class NodeFenced(RuntimeError):
    """This node could not refresh its registration for a whole TTL: another
    node may have taken its rooms, so it admits nobody until Redis is back."""

    code = "node_fenced"


@dataclass(frozen=True)
class NodeInfo:
    """A live node as its last heartbeat described it."""

    id: str
    #: Where clients reach this node's signalling (e.g. ``https://sfu2.example``).
    url: str
    media_addresses: tuple[str, ...] = ()
    rooms: int = 0
    participants: int = 0
    #: Share of one core the node's process used since its previous heartbeat.
    cpu: float = 0.0
    #: The most rooms the node holds (its ``LimitsConfig.max_rooms``); None:
    #: no limit.
    max_rooms: int | None = None

    @property
    def full(self) -> bool:
        """Whether the node holds its :attr:`max_rooms` (rooms placed on it
        and not yet created included): placement skips it."""
        return self.max_rooms is not None and self.rooms >= self.max_rooms

    @property
    def load(self) -> tuple[int, int, float]:
        """What placement minimises: participants, then rooms, then CPU
        (see :meth:`ClusterNode.place_room`)."""
        return (self.participants, self.rooms, self.cpu)


@dataclass(frozen=True)
class Claim:
    """Who owns a room after a claim: ``mine`` if this node does."""

    room_id: str
    owner: str
    epoch: int
    mine: bool


class ClusterNode:
    """Registers this process in Redis and keeps its room ownership there.

    - **Liveness**: the node's record is a key with a TTL (``ttl`` s),
      refreshed every ``ttl / 3`` s with its load. A node that cannot refresh
      for a whole TTL is *fenced*: :attr:`admitting` turns False until Redis
      answers again. Media never depends on Redis.
    - **Rooms**: a room's record ``{node, epoch}`` is claimed atomically
      (:meth:`claim_room`); a room whose node is no longer live can be claimed
      by another node, with the next epoch. Each heartbeat re-checks this
      node's rooms; a room found claimed elsewhere (this node was cut off for
      longer than its TTL) is dropped and reported to ``on_room_lost``, whose
      job is to close the local copy and tell its clients to rejoin.
    - **Placement**: :meth:`place_room` picks the least loaded live node
      for a new room and :meth:`claim_room_for` claims it there, on that
      node's behalf. The target's next heartbeat takes the room up (it joins
      :attr:`placed` and is reported to ``on_room_placed``, whose job is to
      create it); a join may also take it up first, with :meth:`claim_room`.
    - **Single use**: :meth:`consume_once` spends a token cluster-wide.

    ``load`` returns ``(rooms, participants)`` of this process for the
    heartbeat; ``cpu_seconds`` the CPU seconds spent so far, whose rate the
    heartbeat publishes (default: this process's; a node with worker
    processes adds theirs). ``max_rooms``, published too, is the most rooms
    the node holds: placement sends no room to a node that holds as many.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        url: str,
        node_id: str | None = None,
        media_addresses: tuple[str, ...] = (),
        ttl: float = 10.0,
        cluster: str = "pysfu",
        load: Callable[[], tuple[int, int]] | None = None,
        on_room_lost: Callable[[str], None] | None = None,
        cpu_seconds: Callable[[], float] | None = None,
        on_room_placed: Callable[[str], None] | None = None,
        max_rooms: int | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.id = node_id or secrets.token_hex(6)
        self.url = url
        self.media_addresses = tuple(media_addresses)
        self.ttl = ttl
        self.max_rooms = max_rooms
        self.prefix = f"{cluster}:"
        self.admitting = False
        #: Rooms this node owns, with the epoch it holds each at.
        self.rooms: dict[str, int] = {}
        self.on_room_lost = on_room_lost
        #: Rooms another node placed on this one (:meth:`claim_room_for`) that
        #: this one has not claimed yet: they count in its published load.
        self.placed: set[str] = set()
        self.on_room_placed = on_room_placed
        self._load = load or (lambda: (len(self.rooms), 0))
        self._cpu_seconds = cpu_seconds or process_cpu_seconds
        # a command that hangs must not hold the heartbeat past the TTL
        timeout = max(0.5, ttl / 3)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._claim = self.redis.register_script(CLAIM_ROOM)
        self._release = self.redis.register_script(RELEASE_ROOM)
        self._refresh = self.redis.register_script(REFRESH_ROOM)
        self._set_fields = self.redis.register_script(SET_ROOM_FIELDS)
        self._place = self.redis.register_script(PLACE_ROOM)
        self._take_placed = self.redis.register_script(TAKE_PLACED)
        self._hand_back = self.redis.register_script(HAND_BACK_PLACED)
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self._last_refresh = 0.0
        self._cpu_mark = (time.monotonic(), self._cpu_seconds())
        self._cpu = 0.0

    # -- keys ---------------------------------------------------------------

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _room_key(self, room_id: str) -> str:
        return f"{self.prefix}room:{room_id}"

    def _placed_key(self, node_id: str) -> str:
        return f"{self.prefix}placed:{node_id}"

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Register (raises ``RedisError`` if Redis cannot be reached) and keep
        the registration alive."""
        await self._register()
        self.admitting = True
        self._last_refresh = time.monotonic()
        self._heartbeat = asyncio.create_task(self._beat())
        logger.info("cluster node %s registered (%s)", self.id, self.url)

    async def close(self) -> None:
        """Release this node's rooms and registration (a clean shutdown).

        The registration goes first, so that no room is placed here
        meanwhile. Rooms placed here and not taken up yet (nobody is in them)
        are handed back: their record keeps the room's fields but names no
        node, and the next join through any node re-creates the room there.
        """
        self._closing = True
        if self._heartbeat is not None:
            # cancelled until it ends: a cancellation that lands inside a
            # Redis call may come out of redis-py as a connection error, which
            # the heartbeat survives; close() then waited for ever (seen in CI)
            heartbeat = self._heartbeat
            while not heartbeat.done():
                heartbeat.cancel()
                await asyncio.wait({heartbeat}, timeout=0.1)
            self._heartbeat = None
        self.admitting = False
        with contextlib.suppress(RedisError):
            await self.redis.delete(self._node_key(self.id))
            await self.redis.srem(f"{self.prefix}nodes", self.id)
            for room_id in list(self.rooms):
                await self.release_room(room_id)
            handed = await self._hand_back(
                keys=[self._placed_key(self.id)],
                args=[self.id, self._room_key(""), *sorted(self.placed)],
            )
            self.placed.clear()
            if handed:
                logger.info(
                    "cluster node %s: %d room(s) placed here handed back",
                    self.id,
                    handed,
                )
        await self.redis.aclose()

    def info(self) -> NodeInfo:
        """This node as its next heartbeat will describe it."""
        rooms, participants = self._load()
        return NodeInfo(
            self.id,
            self.url,
            self.media_addresses,
            rooms + len(self.placed),
            participants,
            self._cpu,
            self.max_rooms,
        )

    async def _register(self) -> None:
        record = json.dumps(asdict(self.info()))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.id), record, px=self._ttl_ms)
            pipe.sadd(f"{self.prefix}nodes", self.id)
            await pipe.execute()

    async def _beat(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.heartbeat()
            except Exception:  # the heartbeat must outlive any one failure
                logger.exception("cluster node %s: heartbeat failed", self.id)

    async def heartbeat(self) -> bool:
        """Refresh the registration and re-check every owned room once.

        Returns whether Redis answered. Called every ``ttl / 3`` s.
        """
        now = time.monotonic()
        then, cpu_then = self._cpu_mark
        cpu_now = self._cpu_seconds()
        if now > then:
            self._cpu = round((cpu_now - cpu_then) / (now - then), 3)
        self._cpu_mark = (now, cpu_now)
        try:
            # rooms placed here first: the load registered next counts them
            await self._take_up_placed()
            await self._register()
        except RedisError as exc:
            if self.admitting and now - self._last_refresh > self.ttl:
                self.admitting = False
                logger.warning(
                    "cluster node %s fenced: Redis unreachable for %.0f s (%s);"
                    " admitting nobody until it answers",
                    self.id,
                    now - self._last_refresh,
                    exc,
                )
            return False
        self._last_refresh = now
        if not self.admitting:
            self.admitting = True
            logger.info("cluster node %s: Redis answers again, admitting", self.id)
        try:
            for room_id, epoch in list(self.rooms.items()):
                still = await self._refresh(
                    keys=[self._room_key(room_id)],
                    args=[self.id, epoch, self._ttl_ms * 3],
                )
                if not still:
                    await self._reclaim(room_id)
        except RedisError:
            return False  # the next heartbeat checks again
        return True

    async def _take_up_placed(self) -> None:
        """The rooms other nodes placed on this one since the last heartbeat
        (those whose record still names it) join :attr:`placed`."""
        taken = await self._take_placed(
            keys=[self._placed_key(self.id)], args=[self.id, self._room_key("")]
        )
        for room_id in map(str, taken):
            if room_id in self.rooms or room_id in self.placed:
                continue  # a join took it up first
            self.placed.add(room_id)
            logger.info("cluster node %s: room %s placed here", self.id, room_id)
            if self.on_room_placed is not None:
                self.on_room_placed(room_id)

    async def _reclaim(self, room_id: str) -> None:
        """The record of a room this node holds is gone or changed: take it
        back if nobody else did (Redis restarted), else give it up."""
        claim = await self.claim_room(room_id)
        if not claim.mine:
            self.rooms.pop(room_id, None)
            logger.warning(
                "cluster node %s lost room %s to node %s (epoch %d)",
                self.id,
                room_id,
                claim.owner,
                claim.epoch,
            )
            if self.on_room_lost is not None:
                self.on_room_lost(room_id)

    # -- rooms --------------------------------------------------------------

    async def claim_room(self, room_id: str) -> Claim:
        """Own ``room_id`` unless a live node does; one winner at a time.

        Raises :class:`NodeFenced` when this node is not admitting.
        """
        if not self.admitting:
            raise NodeFenced(f"node {self.id} is fenced")
        try:
            owner, epoch, mine = await self._claim(
                keys=[self._room_key(room_id)],
                args=[self.id, self._node_key(""), self._ttl_ms * 3],
            )
        except RedisError as exc:
            if "not registered" in str(exc):
                raise NodeFenced(f"node {self.id} is not registered") from exc
            raise
        claim = Claim(room_id, str(owner), int(epoch), bool(mine))
        if claim.mine:
            self.rooms[room_id] = claim.epoch
            self.placed.discard(room_id)
        return claim

    async def claim_room_for(
        self, room_id: str, node_id: str, fields: dict[str, str] | None = None
    ) -> Claim | None:
        """Claim ``room_id`` for the live node ``node_id`` (this one or
        another, as :meth:`place_room` chose), keeping ``fields`` with its
        record (see :meth:`set_room_fields`). Atomic like :meth:`claim_room`:
        if a live node owns the room already, the claim names it and nothing
        changes. Another node takes the room up at its next heartbeat
        (``on_room_placed``) or at a join (:meth:`claim_room`).

        The returned claim names the room's owner; its ``mine`` says, for
        this node, that the room is its own (as :meth:`claim_room`), for
        another, that this call placed it there. None if ``node_id`` is not
        live (place the room again). Raises :class:`NodeFenced` when this
        node is not admitting.
        """
        pairs = _field_pairs(fields or {})
        if node_id == self.id:
            claim = await self.claim_room(room_id)
            if claim.mine and pairs:
                await self.set_room_fields(room_id, fields or {})
            return claim
        if not self.admitting:
            raise NodeFenced(f"node {self.id} is fenced")
        try:
            owner, epoch, placed = await self._place(
                keys=[self._room_key(room_id), self._placed_key(node_id)],
                args=[node_id, self._node_key(""), self._ttl_ms * 3, *pairs],
            )
        except RedisError as exc:
            if "not registered" in str(exc):
                return None
            raise
        return Claim(room_id, str(owner), int(epoch), bool(placed))

    async def holds(self, room_id: str) -> bool:
        """Whether this node still owns ``room_id`` at the epoch it claimed
        (check before admitting)."""
        epoch = self.rooms.get(room_id)
        if epoch is None or not self.admitting:
            return False
        record = await self.redis.hmget(self._room_key(room_id), ["node", "epoch"])
        return record == [self.id, str(epoch)]

    async def release_room(self, room_id: str) -> None:
        """Give up ``room_id`` (the room closed here)."""
        self.placed.discard(room_id)
        epoch = self.rooms.pop(room_id, None)
        if epoch is not None:
            await self._release(keys=[self._room_key(room_id)], args=[self.id, epoch])

    async def set_room_fields(self, room_id: str, fields: dict[str, str]) -> bool:
        """Keep ``fields`` with the record of ``room_id``, a room of this
        node: they live as long as the record (released, expired or moved
        with it) and are readable by every node (:meth:`room_fields`).
        False if the room is not this node's."""
        args = [self.id, *_field_pairs(fields)]
        return bool(await self._set_fields(keys=[self._room_key(room_id)], args=args))

    async def room_fields(self, room_id: str) -> dict[str, str]:
        """Every field of the record of ``room_id`` (``node`` and ``epoch``
        included); empty if there is no record."""
        record = await self.redis.hgetall(self._room_key(room_id))
        return {str(k): str(v) for k, v in record.items()}

    async def owner_of(self, room_id: str) -> NodeInfo | None:
        """The live node that owns ``room_id``, or None."""
        owner = await self.redis.hget(self._room_key(room_id), "node")
        if owner is None:
            return None
        return await self.node(str(owner))

    async def node(self, node_id: str) -> NodeInfo | None:
        """A live node by id, or None."""
        record = await self.redis.get(self._node_key(node_id))
        return _node_info(str(record)) if record is not None else None

    async def live_nodes(self) -> list[NodeInfo]:
        """Every node whose registration has not expired."""
        ids = sorted(str(i) for i in await self.redis.smembers(f"{self.prefix}nodes"))
        if not ids:
            return []
        records = await self.redis.mget([self._node_key(i) for i in ids])
        dead = [i for i, r in zip(ids, records, strict=True) if r is None]
        if dead:
            await self.redis.srem(f"{self.prefix}nodes", *dead)
        return [_node_info(str(r)) for r in records if r is not None]

    async def place_room(self, room_id: str) -> NodeInfo:
        """Where ``room_id`` lives or should: its live owner, else the least
        loaded live node that is not :attr:`~NodeInfo.full`: the fewest
        participants, then rooms, then the least CPU; this node among those
        tied unless it uses :data:`CPU_MARGIN` of a core more than the
        coolest (so that an even cluster sends no room away for noise), and
        if nothing else is live.

        Each node's load is taken as its last heartbeat published it (this
        node's as it is now) plus the rooms placed on it since (so that a
        burst of creations between two heartbeats still spreads, and stops
        at each node's ``max_rooms``). Raises
        :class:`~pysfu.errors.TooManyRooms` when every live node is full.
        """
        owner = await self.owner_of(room_id)
        if owner is not None:
            return owner
        nodes = [n for n in await self.live_nodes() if n.id != self.id]
        if self.admitting:
            nodes.append(self.info())
        if not nodes:
            return self.info()
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.scard(self._placed_key(node.id))
            pending = await pipe.execute()
        nodes = [
            replace(n, rooms=n.rooms + int(p))
            for n, p in zip(nodes, pending, strict=True)
        ]
        candidates = [n for n in nodes if not n.full]
        if not candidates:
            raise TooManyRooms(
                f"every node of the cluster ({len(nodes)}) holds its"
                " max_rooms rooms already"
            )
        fewest = min((n.participants, n.rooms) for n in candidates)
        tied = [n for n in candidates if (n.participants, n.rooms) == fewest]
        coolest = min(tied, key=lambda n: n.cpu)
        me = next((n for n in tied if n.id == self.id), None)
        if me is not None and me.cpu <= coolest.cpu + CPU_MARGIN:
            return me  # no busier than the rest: no redirect for a noise
        return coolest

    async def consume_once(self, token: str, ttl: float) -> bool:
        """Spend ``token`` cluster-wide: True the first time only (for ``ttl`` s)."""
        spent = await self.redis.set(
            f"{self.prefix}used:{token}", self.id, nx=True, px=int(ttl * 1000)
        )
        return bool(spent)


def _field_pairs(fields: dict[str, str]) -> list[str]:
    """``fields`` as the flat name, value list of the scripts' arguments."""
    pairs: list[str] = []
    for name, value in fields.items():
        if name in ("node", "epoch"):
            raise ValueError(f"{name!r} is the directory's own field")
        pairs += [name, value]
    return pairs


def _node_info(record: str) -> NodeInfo:
    fields: dict[str, Any] = json.loads(record)
    fields["media_addresses"] = tuple(fields.get("media_addresses", ()))
    return NodeInfo(**fields)


def process_cpu_seconds() -> float:
    """CPU seconds this process has spent so far (user and system)."""
    times = os.times()
    return times.user + times.system
