"""The code of docs/how-to/restrict-room-creation.md and docs/how-to/many-rooms.md."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pysfu import (
    SFU,
    ParticipantLeftEvent,
    Room,
    RoomEvent,
    RoomNotFound,
    TooManyRooms,
)
from pysfu.admission import HostKeys
from pysfu.errors import Unauthorized


# --8<-- [start:gate]
class RoomGate:
    """Creates rooms for holders of a host key, at most ``max_rooms`` at once."""

    def __init__(self, sfu: SFU, host_keys: Iterable[str], max_rooms: int = 100):
        self.sfu = sfu
        self.host_keys = HostKeys(host_keys)  # hashed, compared in constant time
        self.max_rooms = max_rooms

    def create(self, presented_key: str | None, **options: Any) -> Room:
        if not self.host_keys.check(presented_key):
            raise Unauthorized("a valid host key is required")
        if len(self.sfu.rooms) >= self.max_rooms:
            raise TooManyRooms(f"this server has {self.max_rooms} rooms already")
        return self.sfu.create_room(**options)  # a random id unless room_id=...
        # --8<-- [end:gate]


# --8<-- [start:close-when-empty]
_closing: set[asyncio.Task[None]] = set()


def close_when_empty(room: Room) -> None:
    """Close ``room`` when its last member leaves, whoever that is."""

    def on_event(event: RoomEvent) -> None:
        if isinstance(event, ParticipantLeftEvent) and not room.members:
            task = asyncio.get_running_loop().create_task(room.close("empty"))
            _closing.add(task)  # listeners are synchronous: close in a task
            task.add_done_callback(_closing.discard)

    room.add_listener(on_event)
    # --8<-- [end:close-when-empty]


# --8<-- [start:room-for]
def room_for(sfu: SFU, room_id: str) -> Room:
    """The room ``room_id``, created on first use and closed when it empties."""
    try:
        return sfu.get_room(room_id)
    except RoomNotFound:
        room = sfu.create_room(
            room_id, max_participants=8, close_when_host_leaves=False
        )
        close_when_empty(room)
        return room
        # --8<-- [end:room-for]


# --8<-- [start:occupancy]
def occupancy(sfu: SFU) -> dict[str, int]:
    """Members per open room, e.g. for a metrics endpoint."""
    return {room_id: len(room.members) for room_id, room in sfu.rooms.items()}
    # --8<-- [end:occupancy]
