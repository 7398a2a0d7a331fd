"""The benchmark scripts' own processes: children they measure, and the netns.

- :class:`Child`: a Python module run as a child process that reports on
  stdout in JSON lines and exits when its stdin closes;
- :class:`ServerProcess`: ``harness/server.py`` as such a child, with its CPU time
  and memory read from ``/proc``;
- :func:`reexec_in_netns`: run the current command again inside a fresh
  network namespace that has only loopback (``unshare --net``, root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import psutil

from .linejson import LINE_LIMIT

#: The repository root: children run ``python -m benchmarks....`` with it on
#: their import path, whatever the caller's working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULE = "benchmarks.harness.server"
#: Set inside the network namespace so that the command does not re-exec again.
NETNS_ENV = "PYSFU_BENCH_IN_NETNS"
#: What runs in the new namespace before the command: bring loopback up.
LOOPBACK_UP = "ip link set lo up"


class Child:
    """``python -m MODULE ARGS`` in its own session (Ctrl-C reaches only us).

    It reads JSON lines from its stdout; :meth:`stop` closes its stdin (the
    child exits on EOF), then escalates to SIGTERM and SIGKILL.
    """

    def __init__(self, module: str, *args: str, stop_timeout: float = 5.0) -> None:
        self.module = module
        self.args = args
        self.stop_timeout = stop_timeout
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            env=package_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def line(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the child prints."""
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"{self.module} {' '.join(self.args)} exited early")
        value: dict[str, Any] = json.loads(raw)
        return value

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for escalate in (proc.terminate, proc.kill):
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout)
                return
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    escalate()
        await proc.wait()


def wakeups(process: psutil.Process) -> int:
    """Times the threads of ``process`` were scheduled in so far (the third
    field of each thread's ``schedstat``): one per wake-up of a thread that
    slept (a selector wait, a lock), plus preemptions. 0 without schedstat."""
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += int((task / "schedstat").read_text().split()[2])
    return total


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of ``process`` so far (all its live threads, user + system).

    Read from each thread's ``schedstat`` (nanoseconds): ``/proc/PID/stat``,
    which psutil reads, counts in 10 ms clock ticks, too coarse for a few
    seconds of a lightly loaded server. Falls back to psutil where
    ``schedstat`` is missing (kernels without ``CONFIG_SCHEDSTATS``, other
    systems). Threads that exit between two readings take their time with
    them: the windows measured here start after every peer has joined.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        tasks = Path(f"/proc/{process.pid}/task")
        total = 0
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):  # the thread just ended
                total += int((task / "schedstat").read_text().split()[0])
        if total:
            return total / 1e9
    times = process.cpu_times()
    return float(times.user + times.system)


def memory(process: psutil.Process, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of ``process`` in bytes, from /proc."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return int(process.memory_info().rss)


class ServerProcess(Child):
    """``python -m benchmarks.harness.server --mode MODE``; :meth:`listen`
    starts it and returns its port."""

    def __init__(self, mode: str, capacity: int, extra_args: tuple[str, ...] = ()):
        super().__init__(
            SERVER_MODULE,
            "--mode",
            mode,
            "--port",
            "0",
            "--subscribers",
            str(capacity),
            "--exit-on-stdin-eof",
            *extra_args,
        )
        self.mode = mode

    async def listen(self, timeout: float = 30.0) -> int:
        await self.start()
        try:
            hello = await self.line(timeout)
        except RuntimeError:
            raise RuntimeError(f"{self.mode} server exited before listening") from None
        return int(hello["port"])


def reexec_in_netns(
    setup: str = LOOPBACK_UP,
    refusal: str = "--netns needs root, unshare(1) and ip(8)",
) -> None:
    """Run this command again in a new network namespace, after ``setup``.

    Does nothing when already inside (``NETNS_ENV`` is set); exits with
    ``refusal`` when the namespace cannot be made.
    """
    if os.environ.get(NETNS_ENV):
        return
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        sys.exit(refusal)
    os.execvpe(
        "unshare",
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            setup + ' && exec "$@"',
            "sh",
            *current_command(),
        ],
        {**package_env(), NETNS_ENV: "1"},
    )


def package_env() -> dict[str, str]:
    """This environment with the repository root first on ``PYTHONPATH``, so
    that ``python -m benchmarks.<suite>`` (and ``tests.peers``) import."""
    path = os.environ.get("PYTHONPATH")
    root = str(REPO_ROOT)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + path if path else root}


def current_command() -> list[str]:
    """The command line that started this process: ``python -m MODULE ARGS``
    when it runs as a module (every suite does), else ``python ARGS``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        return [sys.executable, "-m", spec.name, *sys.argv[1:]]
    return [sys.executable, *sys.argv]
