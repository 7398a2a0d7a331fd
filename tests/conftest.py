from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from pysfu import SFU, IceConfig, SFUConfig

from .peers import Peer, PeerFactory

LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))


@pytest.fixture
async def sfu() -> AsyncIterator[SFU]:
    server = SFU(SFUConfig(ice=LOOPBACK))
    yield server
    await server.close()
    # let aiortc's closing tasks finish before the loop goes away
    await asyncio.sleep(0.1)
    gc.collect()


@pytest.fixture
async def peers() -> AsyncIterator[PeerFactory]:
    """Make client peers; every one made is closed when the test ends."""
    made: list[Peer] = []

    def make(name: str, code: int, **options: object) -> Peer:
        made.append(Peer(name, code, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for peer in made:
        await peer.close()
