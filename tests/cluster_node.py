"""A cluster node in a process of its own, for tests that kill or pause it:
``python -m tests.cluster_node REDIS_URL NODE_ID ROOM TTL`` registers, claims
ROOM, prints ``claimed <epoch>``, keeps heartbeating and prints ``lost <room>``
when a room it held turns out to be another node's."""

from __future__ import annotations

import asyncio
import sys

from pysfu.cluster import ClusterNode


async def main(redis_url: str, node_id: str, room: str, ttl: float) -> None:
    node = ClusterNode(
        redis_url,
        url=f"http://{node_id}.test",
        node_id=node_id,
        ttl=ttl,
        on_room_lost=lambda lost: print(f"lost {lost}", flush=True),
    )
    await node.start()
    claim = await node.claim_room(room)
    print(
        f"claimed {claim.epoch}" if claim.mine else f"owner {claim.owner}", flush=True
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
