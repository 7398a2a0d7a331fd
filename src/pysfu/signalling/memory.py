"""An in-process signalling adapter: asyncio queues instead of a network.

Used by the test suite and handy for embedding (a bot that joins a room from
the same process).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from ..accounting import CpuAccount, metered
from ..messages import ClientMessage, ServerMessage
from ..ports import Role, RoleName
from .adapter import enforce_cpu_budget

if TYPE_CHECKING:
    from ..participant import Participant
    from ..room import Room

__all__ = [
    "MemoryClient",
    "MemorySignalling",
]

M = TypeVar("M")


class MemoryClient:
    """The client end of an in-memory signalling connection."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self._participant: Participant | None = None
        self._cpu: CpuAccount | None = None

    @property
    def participant(self) -> Participant:
        assert self._participant is not None, "not joined"
        return self._participant

    async def _deliver(self, message: ServerMessage) -> None:
        self.inbox.put_nowait(message)

    async def send(self, message: ClientMessage) -> None:
        """Send a message to the server side (processed before this returns).

        After the participant left, messages go nowhere, as on a closed socket.
        """
        if self._participant is not None:
            await metered(self._cpu, "signalling", self._participant.handle(message))

    async def receive(self, timeout: float | None = None) -> ServerMessage:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def receive_type(self, kind: type[M], timeout: float | None = None) -> M:
        """Wait for the next message of type ``kind``, skipping others."""

        async def wait() -> M:
            while True:
                message = await self.inbox.get()
                if isinstance(message, kind):
                    return message

        return await asyncio.wait_for(wait(), timeout)


class MemorySignalling:
    """Joins rooms on behalf of in-process clients."""

    async def join(
        self,
        room: Room,
        participant_id: str,
        role: Role | RoleName = "participant",
        **options: object,
    ) -> MemoryClient:
        client = MemoryClient()
        participant = await room.join(
            participant_id,
            role,
            client._deliver,
            **options,  # type: ignore[arg-type]
        )
        client._participant = participant
        client._cpu = enforce_cpu_budget(participant)

        def release(_: object) -> None:
            # Like a transport whose session ended, let go of the participant.
            client._participant = None

        watcher = asyncio.get_running_loop().create_task(participant.wait_closed())
        watcher.add_done_callback(release)
        return client
