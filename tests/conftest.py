from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from pysfu import SFU, IceConfig, SFUConfig

from .peers import Peer, PeerFactory
from .redis_server import RedisServer, free_tcp_port

LOOPBACK = IceConfig(host_addresses=("127.0.0.1",))

#: The test tiers, one directory each; every test is marked with its tier, so
#: ``pytest -m unit`` runs the unit tier only (see docs/contributing.md).
TIERS = ("unit", "integration", "interop", "adversarial", "wan")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of the directory it lives in."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if not path.is_relative_to(TESTS):
            continue
        parts = path.relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(parts[0])


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Debian's redis-server on a free loopback port, stopped by its pid."""
    server = RedisServer(free_tcp_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session, closed when the test ends."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once per session (tests/wheel_venv.py)."""
    from .wheel_venv import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))
