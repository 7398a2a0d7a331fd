"""Rooms on many machines: Redis as the directory of nodes and rooms.

Each pysfu process runs a :class:`ClusterNode`: it registers itself in Redis
under a key with a TTL, claims the rooms it hosts atomically (one owner per
room, with an epoch that grows on each change of owner), and finds where a
room lives for a join that reached the wrong node. Media never goes through
Redis. Needs the ``cluster`` extra (``redis``). See ``docs/how-to/cluster.md``.
"""

from __future__ import annotations

from .node import Claim, ClusterNode, NodeFenced, NodeInfo, process_cpu_seconds

__all__ = ["Claim", "ClusterNode", "NodeFenced", "NodeInfo", "process_cpu_seconds"]
