from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

#: Seconds a test waits for something that must happen (a connection, media,
#: a server starting) before it fails. A liveness bound only: on a machine at
#: load 14 a server start or an ICE connection takes several seconds, so the
#: bound is far above what a healthy run needs, and no test asserts speed.
#: It stays below 100 s, when aiortc's VP8 encoder makes a keyframe of its own
#: accord: waiting for video must not pass without the SFU's keyframe request.
LIVENESS = 60.0


async def eventually(
    predicate: Callable[[], object], timeout: float = LIVENESS, what: str = ""
) -> None:
    """Wait until ``predicate()`` is true; fail with ``what`` after ``timeout`` s.

    The timeout is a liveness bound (see :data:`LIVENESS`), not a performance
    assertion.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def ice_sockets(pc: RTCPeerConnection) -> list[Any]:
    """The aioice protocols (one per local candidate, each with its UDP
    transport) of a client connection: of its transceivers and data channels,
    each once, since bundled ones share an ICE connection."""
    connections = {
        id(dtls.transport._connection): dtls.transport._connection
        for dtls in [t.receiver.transport for t in pc.getTransceivers()]
        + ([pc.sctp.transport] if pc.sctp is not None else [])
    }
    return [p for c in connections.values() for p in c._protocols]


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of a ``/proc/PID/stat`` after the command name (state first,
    then the parent's pid), or ``None`` if the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for whoever adopted it."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"


def child_pids(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def udp_port_owner(port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the UDP socket bound to ``port`` (this netns)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    return None


class ManualClock:
    """A clock that moves only when the test advances it.

    For the ``clock`` of a rate limit or an expiry: what the test checks then
    depends on the time it says has passed, not on how fast a busy machine ran
    the test.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualTimers(ManualClock):
    """A :class:`ManualClock` that also schedules: ``call_at(when, callback)``
    (the forwarding core's scheduler) runs the callback when :meth:`advance`
    reaches ``when``, in deadline order. No event loop needed."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)
        self.pending: list[_ManualTimer] = []

    def call_at(self, when: float, callback: Callable[[], None]) -> _ManualTimer:
        timer = _ManualTimer(when, callback)
        self.pending.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for t in self.pending if t.when <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.pending.remove(timer)
            self.now = max(self.now, timer.when)
            if not timer.cancelled:
                timer.callback()
        self.now = end


class _ManualTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def udp_backlog(ports: Iterable[int]) -> int:
    """Bytes waiting in the receive queues of the UDP sockets bound to
    ``ports`` (this netns): zero once their owner has read everything sent."""
    wanted, total = set(ports), 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in wanted:
                total += int(fields[4].split(":")[1], 16)
    return total
