from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    predicate: Callable[[], object], timeout: float = 20, what: str = ""
) -> None:
    """Wait until ``predicate()`` is true; fail with ``what`` after ``timeout`` s.

    The timeout is a liveness bound (generous, for noisy shared machines), not a
    performance assertion.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)
