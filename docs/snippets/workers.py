"""The code of docs/how-to/workers.md (run by tests/integration/test_workers.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from pysfu import IceConfig, JoinRequest, RoleName, RoomEvent, SFUConfig
from pysfu.signalling import ServerMessage, deliver_json, to_json
from pysfu.workers import WorkerPool


# --8<-- [start:start]
async def start_pool() -> WorkerPool:
    config = SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",)))
    pool = WorkerPool(workers=2, config=config)  # default: one per CPU
    await pool.start()  # and `await pool.close()` on shutdown
    return pool
    # --8<-- [end:start]


# --8<-- [start:session]
async def session(
    pool: WorkerPool,
    room_id: str,
    participant_id: str,
    role: RoleName,
    receive: Callable[[], Awaitable[str | None]],  # None: the client went away
    send: Callable[[str], Awaitable[None]],
) -> None:
    """One client's signalling, whichever worker holds its room."""

    async def outbox(message: ServerMessage) -> None:
        await send(json.dumps(to_json(message)))

    participant = await pool.join(JoinRequest(room_id, participant_id, role, outbox))
    try:
        while (text := await receive()) is not None:
            await deliver_json(participant, text)
    finally:
        await participant.leave("disconnected")
        # --8<-- [end:session]


# --8<-- [start:watch]
async def occupancy(pool: WorkerPool) -> dict[str, tuple[int, int]]:
    """Each room's worker and member count."""
    stats = await pool.stats()
    return {
        r.room_id: (pool.room_worker(r.room_id), len(r.members)) for r in stats.rooms
    }


def log_events(pool: WorkerPool, log: list[str]) -> None:
    def on_event(event: RoomEvent) -> None:
        log.append(f"{type(event).__name__} {event.room_id}")

    pool.add_listener(on_event)
    # --8<-- [end:watch]
