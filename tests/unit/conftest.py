"""The unit tier opens no socket and starts no process.

Every test here runs with ``bind``, ``connect``, ``sendto`` and ``listen``
on sockets, and ``subprocess.Popen``, replaced by a function that fails with
the reason: a unit test that reaches for the network or a child process fails
at once and says so, instead of passing only where loopback happens to work.
``socket.socketpair()`` (asyncio's self-pipe) still works: it needs none of
them. Tests that need peers, servers or subprocesses belong in
``tests/integration/``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import NoReturn

import pytest


class NetworkInUnitTest(RuntimeError):
    """A unit test tried to use the network or start a process."""


def _no_socket(*args: object, **kwargs: object) -> NoReturn:
    raise NetworkInUnitTest(
        "the unit tier opens no socket: move this test to tests/integration/"
    )


def _no_process(*args: object, **kwargs: object) -> NoReturn:
    raise NetworkInUnitTest(
        "the unit tier starts no process: move this test to tests/integration/"
    )


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forbid sockets' network calls and subprocesses for the test's duration."""
    for name in ("bind", "connect", "connect_ex", "sendto", "listen"):
        monkeypatch.setattr(socket.socket, name, _no_socket)
    monkeypatch.setattr(subprocess.Popen, "__init__", _no_process)
    yield
