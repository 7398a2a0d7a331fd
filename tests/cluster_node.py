"""A cluster node in a process of its own, for tests that kill or pause it:
``python -m tests.cluster_node REDIS_URL NODE_ID ROOM TTL`` registers, claims
ROOM, prints ``claimed <epoch>``, keeps heartbeating and prints ``lost <room>``
when a room it held turns out to be another node's.

``... TTL BURST`` (a race between processes): registers, prints ``ready``,
waits until the key ``pysfu:go`` exists, then claims ROOM ``BURST`` times at
once (each half of them placing it on the node named by that key's value
instead, with ``claim_room_for``) and prints ``owners <ids> epochs <epochs>
mine <count>``: the owners and epochs the claims saw, and how many were this
node's own or placed by it; then keeps heartbeating."""

from __future__ import annotations

import asyncio
import sys

from pysfu.cluster import ClusterNode


async def burst(node: ClusterNode, room: str, count: int) -> None:
    print("ready", flush=True)
    while (target := await node.redis.get("pysfu:go")) is None:
        await asyncio.sleep(0.005)
    claims = await asyncio.gather(
        *(
            node.claim_room(room) if i % 2 else node.claim_room_for(room, str(target))
            for i in range(count)
        )
    )
    owners = sorted({c.owner for c in claims if c is not None})
    epochs = sorted({c.epoch for c in claims if c is not None})
    mine = sum(1 for c in claims if c is not None and c.mine)
    print(
        f"owners {','.join(owners)} epochs {','.join(map(str, epochs))} mine {mine}",
        flush=True,
    )


async def main(redis_url: str, node_id: str, room: str, ttl: float, *rest: str) -> None:
    node = ClusterNode(
        redis_url,
        url=f"http://{node_id}.test",
        node_id=node_id,
        ttl=ttl,
        on_room_lost=lambda lost: print(f"lost {lost}", flush=True),
    )
    await node.start()
    if rest:
        await burst(node, room, int(rest[0]))
    else:
        claim = await node.claim_room(room)
        print(
            f"claimed {claim.epoch}" if claim.mine else f"owner {claim.owner}",
            flush=True,
        )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), *sys.argv[5:])
    )
