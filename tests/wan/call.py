"""A 2-person call on the WAN bed: through pysfu or direct (P2P), with aiortc.

Used by ``tests/wan/test_wan.py`` and ``benchmarks/wan.py``. The publisher
(:mod:`tests.wan.client`, an aiortc peer sending a detailed moving picture)
and the viewer each sit behind their own link; through pysfu the server
(``examples/ws_sfu.py``) has a clean link of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from .bed import Port, WanBed

HOST_KEY = "test-host-key"
SERVER_PORT = 8080
P2P_PORT = 8081


@dataclass
class Lines:
    """The JSON lines a client prints, collected by a thread."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def follow(self, stream: IO[bytes]) -> None:
        for line in stream:
            if line.startswith(b"{"):
                self.records.append(json.loads(line))
                self.ready.set()

    def reports(self) -> list[dict[str, Any]]:
        """The periodic reports (not the join link)."""
        return [r for r in self.records if "t" in r]


def follow(process: subprocess.Popen[bytes]) -> Lines:
    lines = Lines()
    assert process.stdout is not None
    threading.Thread(target=lines.follow, args=(process.stdout,), daemon=True).start()
    return lines


class CallFailed(RuntimeError):
    pass


@contextmanager
def two_person_call(
    publisher: Port, viewer: Port, *, mode: str = "pysfu", seed: int = 1
) -> Iterator[tuple[WanBed, Lines, Lines]]:
    """Yields the bed and the publisher's and viewer's reports; ``mode`` is
    ``"pysfu"`` (through examples/ws_sfu.py) or ``"p2p"``."""
    links = {"publisher": publisher, "viewer": viewer}
    if mode == "pysfu":
        links["server"] = Port("")
    client = [sys.executable, "-m", "tests.wan.client"]
    with WanBed(links, seed=seed) as bed:
        publisher_address = f"--address={bed.address('publisher')}"
        viewer_address = f"--address={bed.address('viewer')}"
        if mode == "pysfu":
            server = bed.address("server")
            bed.spawn(
                "server",
                [
                    sys.executable,
                    "examples/ws_sfu.py",
                    f"--bind={server}",
                    f"--port={SERVER_PORT}",
                    f"--ice-address={server}",
                    f"--host-key={HOST_KEY}",
                ],
                stdout=subprocess.DEVNULL,
            )
            published = follow(
                bed.spawn(
                    "publisher",
                    [
                        *client,
                        "--publish",
                        f"--base=http://{server}:{SERVER_PORT}",
                        publisher_address,
                    ],
                )
            )
            if not published.ready.wait(60):
                raise CallFailed("the publisher did not create a room")
            join_url = published.records[0]["join_url"]
            viewed = follow(
                bed.spawn("viewer", [*client, f"--join-url={join_url}", viewer_address])
            )
        elif mode == "p2p":
            viewed = follow(
                bed.spawn(
                    "viewer", [*client, f"--p2p-listen={P2P_PORT}", viewer_address]
                )
            )
            offer_url = f"http://{bed.address('viewer')}:{P2P_PORT}/offer"
            published = follow(
                bed.spawn(
                    "publisher",
                    [*client, f"--p2p-viewer={offer_url}", publisher_address],
                )
            )
        else:
            raise ValueError(f"unknown mode {mode!r}")
        yield bed, published, viewed


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.5 s; :class:`CallFailed` after ``timeout``."""
    event = threading.Event()
    for _ in range(int(timeout * 2)):
        if condition():
            return
        event.wait(0.5)
    raise CallFailed(f"timed out waiting for {what}")


def rate(records: list[dict[str, Any]], key: str, seconds: float) -> float:
    """Per second increase of ``key`` over the last ``seconds`` of reports."""
    records = [r for r in records if key in r]
    last = records[-1]
    first = next(r for r in records if r["t"] >= last["t"] - seconds)
    return float(last[key] - first[key]) / max(last["t"] - first["t"], 1e-9)
