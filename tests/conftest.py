from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from pysfu import SFU, IceConfig, SFUConfig

LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))


@pytest.fixture
async def sfu() -> AsyncIterator[SFU]:
    server = SFU(SFUConfig(ice=LOOPBACK))
    yield server
    await server.close()
    # let aiortc's closing tasks finish before the loop goes away
    await asyncio.sleep(0.1)
    gc.collect()
