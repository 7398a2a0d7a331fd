"""What an application adds to every room a worker process creates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..room import Room

__all__ = ["RoomHook"]


class RoomHook(Protocol):
    """Given to :class:`~pysfu.workers.WorkerPool` (``room_hook=``), pickled
    to every worker process: the worker calls :meth:`attach` with each room
    it creates (e.g. to set its :attr:`~pysfu.Room.recording_control`), and
    awaits :meth:`drain` when it shuts down, after its rooms closed and
    before it exits (e.g. to finish the files of a recording)."""

    def attach(self, room: Room) -> None: ...

    async def drain(self) -> None: ...
