"""Issue 21.1 against the real example process: tiny SCTP chunks.

An attacker joins through the app's WebSocket signalling with an aiortc
peer, opens the data channel and sends one-byte DATA fragments that never
finish a message (ordered), or fragments of unordered messages, paced by the
server's acknowledgements as a sender would be. Unguarded, aiortc does O(n)
work per chunk held: 12,000 chunks cost 14.3 CPU-seconds and starved every
other room. Here the server aborts the attacker's association (at the first
unordered fragment, or at 1,024 chunks held), says ``data_too_large`` and
counts and logs it once; the attacker keeps its seat and its connection; a
watched 2-person room in the same process decodes video in every second of
the attack; the server's CPU time and memory stay within bounds. With
``--workers=2`` the watched room and the attacker share one worker process.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import aiohttp
import pytest
from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, SCTP_DATA_UNORDERED

from pysfu._aiortc.sctp import MAX_HELD_CHUNKS

from ..example_server import example_server
from ..helpers import eventually
from ..peers import PeerFactory
from .app_helpers import FrameMeter, Usage, join_room, new_room, scrape, worker_of
from .tiny_chunks import WINDOW, received_by_sacks, send_tiny_fragments

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: At most this many chunks are sent: as many as cost an unguarded server
#: 14.3 CPU-seconds (issue 21), so a server without the cap fails the CPU
#: bound (or the wait for its error) instead of keeping the test busy.
MAX_SENT = 12_000
#: The server's CPU seconds (workers included) from the attack's start to
#: 3 s after the abort. Measured (2 cores): 0.2-0.3 s (ordered), 0.05 s
#: (unordered), unloaded and under `stress-ng --cpu 2`; most of it is
#: forwarding the watched room's video. A quarter of what the
#: chunks alone cost an unguarded server.
CPU_BOUND = 3.5
#: Growth of the server's resident memory over the attack.
RSS_BOUND = 30 * 2**20
METRICS_TOKEN = "metrics-secret"


@pytest.mark.parametrize(
    "flags",
    [SCTP_DATA_FIRST_FRAG, SCTP_DATA_FIRST_FRAG | SCTP_DATA_UNORDERED],
    ids=["ordered", "unordered"],
)
@pytest.mark.parametrize("mode", [(), ("--workers=2",)], ids=["in-process", "workers"])
async def test_tiny_chunks_abort_only_the_attackers_channel(
    http: aiohttp.ClientSession,
    peers: PeerFactory,
    flags: int,
    mode: tuple[str, ...],
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    async with example_server(
        f"--metrics-token={METRICS_TOKEN}", *mode, log=log
    ) as base:
        # every room created first: with --workers=2 the pool places them in
        # turn, so the watched room and the attacker's share worker 0
        watched, _, attacked = [await new_room(http, base) for _ in range(3)]
        # the watched room: one encoder and one decoder in this process,
        # which runs every client (no audio: less for a loaded machine)
        quiet = partial(peers, publish_video=False, publish_audio=False)
        host = await join_room(
            http, watched, partial(peers, publish_audio=False), 1, role="host"
        )
        viewer = await join_room(http, watched, quiet, 2)
        track = await viewer.peer.wait_video_from(host.peer)
        # the attacker hosts the other room, publishing nothing
        attacker = await join_room(http, attacked, quiet, 3, role="host")
        await attacker.peer.wait_channel()
        if mode:
            workers = {worker_of(base, m.ws) for m in (host, viewer, attacker)}
            assert len(workers) == 1 and None not in workers, workers
        await eventually(
            lambda: attacker.peer.pc.connectionState == "connected",
            what="attacker connected",
        )
        sctp = attacker.peer.pc.sctp
        assert sctp is not None

        received = received_by_sacks(attacker.peer, MAX_SENT)
        before = Usage.of(base.process.pid)
        async with FrameMeter(track, host.peer.code) as meter:
            sent = await send_tiny_fragments(attacker.peer, flags, received, MAX_SENT)
            flood_cpu = Usage.of(base.process.pid).cpu - before.cpu
            await eventually(
                lambda: any(e.code == "data_too_large" for e in attacker.peer.errors),
                what=f"data_too_large after {sent} chunks ({flood_cpu:.1f} CPU-s)",
            )
            # the association is aborted: the ABORT reached the attacker
            await eventually(lambda: sctp.state == "closed", what="abort")
            # the flood takes about a second: watched for some more, a slow
            # loop's effects (consent lost, frames late) would show there
            turns = len(meter.seconds)
            await eventually(lambda: len(meter.seconds) >= turns + 3, what="3 s")
            after = Usage.of(base.process.pid)
        cpu, rss = after.cpu - before.cpu, after.rss - before.rss
        report = (
            f"{sent} chunks sent; server: {cpu:.2f} CPU-s,"
            f" RSS {rss / 2**20:+.1f} MiB; watched room: {meter.rate()}"
        )
        print(report)
        if flags & SCTP_DATA_UNORDERED:
            # refused at the first fragment; the rest of the first window was
            # sent before the attacker heard of it
            assert sent <= WINDOW + 1, report
        else:  # (chunks lost on the way are not held: a few more may be sent)
            assert MAX_HELD_CHUNKS < sent < 2 * MAX_HELD_CHUNKS, report
        assert cpu < CPU_BOUND, report
        assert rss < RSS_BOUND, report
        assert not meter.empty_seconds(), f"{meter.seconds}; {report}"

        # told once; its seat and connection stay, media included
        assert [e.code for e in attacker.peer.errors] == ["data_too_large"]
        assert attacker.peer.pc.connectionState == "connected"
        # the watched room goes on; nobody else left or got an error
        frames = len(track.patterns)
        await eventually(lambda: len(track.patterns) > frames + 30, what="decoding")
        assert {code for code, _ in track.patterns[frames:]} == {host.peer.code}
        for member in (host, viewer, attacker):
            assert not member.ws.closed.is_set()
            assert not [m for m in member.ws.raw if m["type"] == "participant-left"]
        assert not (host.peer.errors or viewer.peer.errors)
        metrics = await scrape(http, base, METRICS_TOKEN)
        assert metrics["pysfu_participants"] == 3
        assert metrics["pysfu_data_messages_dropped_total"] == 1, metrics
        assert metrics["pysfu_sctp_aborts_total"] == 1, metrics
        assert metrics["pysfu_signalling_errors_total"] == 0
        assert metrics["pysfu_participants_removed_total[cpu_budget]"] == 0
    # logged once, with what the attacker did
    problem = "unordered" if flags & SCTP_DATA_UNORDERED else str(MAX_HELD_CHUNKS)
    closed = [
        line for line in log.read_text().splitlines() if "data channel closed" in line
    ]
    assert len(closed) == 1, closed
    assert problem in closed[0], closed
