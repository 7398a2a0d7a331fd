"""A 2-person call on an emulated WAN: publisher, server and viewer each in a
network namespace of their own, joined by :mod:`tests.wan.linkemu`.

The viewer's downlink is 500 kbit/s with 40 ms of delay. The aiortc viewer's
receiver estimates that (REMB); pysfu must pass it on to the publisher, whose
encoder then sends less than the link carries, and the viewer keeps decoding.
Before, pysfu told the publisher only its own (clean) uplink estimate and the
publisher sent ~1.5 Mbit/s into the 500 kbit/s link.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

from .bed import Direction, Port, WanBed, available

pytestmark = pytest.mark.skipif(
    not available(), reason="needs root and iproute2 for network namespaces"
)

HOST_KEY = "test-host-key"
PORT = 8080


@dataclass
class Lines:
    """JSON lines a child prints, collected by a thread."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def follow(self, stream: IO[bytes]) -> None:
        for line in stream:
            if line.startswith(b"{"):
                self.records.append(json.loads(line))
                self.ready.set()


def follow(process: subprocess.Popen[bytes]) -> Lines:
    lines = Lines()
    assert process.stdout is not None
    threading.Thread(target=lines.follow, args=(process.stdout,), daemon=True).start()
    return lines


@contextmanager
def two_person_call(
    publisher: Port, viewer: Port, seed: int = 1
) -> Iterator[tuple[WanBed, Lines, Lines]]:
    """The example server, an aiortc publisher (host) and an aiortc viewer,
    each behind its link; yields the bed and the two clients' reports."""
    links = {"server": Port(""), "publisher": publisher, "viewer": viewer}
    with WanBed(links, seed=seed) as bed:
        server = bed.address("server")
        bed.spawn(
            "server",
            [sys.executable, "examples/ws_sfu.py", f"--bind={server}",
             f"--port={PORT}", f"--ice-address={server}", f"--host-key={HOST_KEY}"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://{server}:{PORT}"
        client = [sys.executable, "-m", "tests.wan.client"]
        publishing = bed.spawn(
            "publisher",
            [*client, "--publish", f"--base={base}",
             f"--address={bed.address('publisher')}"],
        )  # fmt: skip
        published = follow(publishing)
        if not published.ready.wait(60):
            pytest.fail("the publisher did not create a room")
        join_url = published.records[0]["join_url"]
        viewing = bed.spawn(
            "viewer",
            [*client, f"--join-url={join_url}", f"--address={bed.address('viewer')}"],
        )
        yield bed, published, follow(viewing)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    event = threading.Event()
    for _ in range(int(timeout * 2)):
        if condition():
            return
        event.wait(0.5)
    pytest.fail(f"timed out waiting for {what}")


def rate(records: list[dict[str, Any]], key: str, seconds: float) -> float:
    """Per second increase of ``key`` over the last ``seconds`` of reports."""
    records = [r for r in records if key in r]
    last = records[-1]
    first = next(r for r in records if r["t"] >= last["t"] - seconds)
    return (last[key] - first[key]) / max(last["t"] - first["t"], 1e-9)


def test_a_slow_viewer_slows_the_publisher_and_keeps_decoding() -> None:
    slow = Port("", down=Direction(rate_bps=500_000, delay_ms=40, queue_ms=300))
    with two_person_call(Port(""), slow) as (bed, published, viewed):
        wait_for(
            lambda: viewed.records and viewed.records[-1]["frames"] >= 30,
            timeout=120,
            what="the viewer's first pictures",
        )
        # then let the estimates settle for a while (no timing is asserted)
        start = viewed.records[-1]["t"]
        wait_for(
            lambda: viewed.records[-1]["t"] >= start + 40,
            timeout=300,
            what="40 s of call",
        )
        sent = rate(published.records, "video_bytes_sent", 15) * 8
        decoded = rate(viewed.records, "frames", 15)
        for record in published.records[1::3]:
            print("publisher", record)
        print("bit/s", sent)
        print("viewer frames/s", decoded)
    print("links", bed.emulator_counters)
    assert sent < 500_000, f"the publisher sends {sent:.0f} bit/s into a 500k link"
    rembs = sorted(r["remb"] for r in published.records[-15:])
    assert rembs[len(rembs) // 2] < 500_000  # the median (one may overshoot)
    assert decoded > 3, "the viewer's picture stopped"
