"""Prometheus metrics of any rooms (``pip install pysfu[metrics]``).

    collector = RoomsCollector(pool)  # or RoomsCollector(sfu)
    registry.register(collector)
    await collector.refresh()  # before each scrape

:class:`RoomsCollector` exposes the same metrics for any
:class:`~pysfu.rooms.Rooms`: an :class:`~pysfu.SFU`'s or a
:class:`~pysfu.workers.WorkerPool`'s. Asking rooms in other processes is
asynchronous and a Prometheus scrape is not, so a scrape shows the snapshot of
the last :meth:`~RoomsCollector.refresh`. For an in-process SFU registered
once in a global registry, :class:`SFUCollector` reads the SFU at each scrape
(no refresh needed). Nothing is counted twice on the packet path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .admission import HasRooms
from .rooms import Rooms
from .sfu import SFU
from .stats import REMOVAL_REASONS, SFUStats, Totals

__all__ = [
    "PoolCollector",
    "RoomsCollector",
    "SFUCollector",
]


class RoomsCollector(Collector):
    """Exposes rooms, participants, tracks and packet counters of any
    :class:`~pysfu.rooms.Rooms` (an :class:`~pysfu.SFU` is taken too).

    A scrape shows the snapshot of the last :meth:`refresh`.
    """

    def __init__(
        self, rooms: Rooms[Any] | HasRooms[Any], prefix: str = "pysfu"
    ) -> None:
        #: The rooms read at each :meth:`refresh`.
        self.rooms: Rooms[Any] = (
            rooms.as_rooms() if isinstance(rooms, HasRooms) else rooms
        )
        self.prefix = prefix
        self._live = SFUStats(rooms=())
        self._totals = Totals()

    async def refresh(self) -> None:
        """Take a snapshot of the rooms' statistics, for the next scrapes."""
        self._live = await self.rooms.stats()
        self._totals = await self.rooms.totals()

    def collect(self) -> Iterator[Metric]:
        yield from _families(self._live, self._totals, self.prefix)


#: Deprecated name of :class:`RoomsCollector` (which takes a pool).
PoolCollector = RoomsCollector


class SFUCollector(Collector):
    """The metrics of :class:`RoomsCollector` for one in-process SFU, read at
    each scrape (no :meth:`RoomsCollector.refresh` needed)."""

    def __init__(self, sfu: SFU, prefix: str = "pysfu") -> None:
        self.sfu = sfu
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        live = self.sfu.stats()
        yield from _families(live, self.sfu.retired.plus_live(live), self.prefix)


def _families(live: SFUStats, totals: Totals, p: str) -> Iterator[Metric]:
    yield GaugeMetricFamily(f"{p}_rooms", "Rooms open.", value=len(live.rooms))
    yield GaugeMetricFamily(
        f"{p}_participants", "Participants in rooms.", value=live.participants
    )
    tracks = GaugeMetricFamily(
        f"{p}_published_tracks", "Tracks being published.", labels=["kind"]
    )
    subscriptions = GaugeMetricFamily(
        f"{p}_subscriptions",
        "Tracks being forwarded to a subscriber.",
        labels=["kind"],
    )
    for kind in ("audio", "video"):
        members = [m for r in live.rooms for m in r.members]
        tracks.add_metric(
            [kind], sum(1 for m in members for t in m.published if t.kind == kind)
        )
        subscriptions.add_metric(
            [kind], sum(1 for m in members for s in m.subscribed if s.kind == kind)
        )
    yield tracks
    yield subscriptions
    for name, help_text, values in (
        (
            "packets_received",
            "RTP packets received from publishers.",
            totals.packets_received,
        ),
        (
            "bytes_received",
            "RTP bytes received from publishers.",
            totals.bytes_received,
        ),
        (
            "packets_forwarded",
            "RTP packets sent to subscribers.",
            totals.packets_forwarded,
        ),
        (
            "bytes_forwarded",
            "RTP bytes sent to subscribers.",
            totals.bytes_forwarded,
        ),
    ):
        family = CounterMetricFamily(f"{p}_{name}", help_text, labels=["kind"])
        for kind in ("audio", "video"):
            family.add_metric([kind], values.get(kind, 0))
        yield family
    for name, help_text, value in (
        (
            "packets_dropped",
            "RTP packets not sent to a subscriber: before its first keyframe,"
            " its transport not connected, its socket buffer full, or too large.",
            totals.packets_dropped,
        ),
        (
            "packets_dropped_too_large",
            "RTP packets not sent to a subscriber because they do not fit"
            " a UDP datagram once encrypted (also in packets_dropped).",
            totals.packets_dropped_too_large,
        ),
        (
            "retransmissions",
            "Packets resent to subscribers after a NACK.",
            totals.retransmitted,
        ),
        (
            "keyframe_requests",
            "Keyframe requests sent to publishers.",
            totals.keyframe_requests_sent,
        ),
        (
            "signalling_errors",
            "Client messages refused with an error.",
            totals.signalling_errors,
        ),
        (
            "data_messages_relayed",
            "Data channel messages delivered to participants.",
            totals.data_messages_relayed,
        ),
        (
            "data_bytes_relayed",
            "Data channel bytes delivered to participants.",
            totals.data_bytes_relayed,
        ),
        (
            "data_messages_dropped",
            "Data channel messages of participants not relayed.",
            totals.data_messages_dropped,
        ),
        (
            "sctp_aborts",
            "Participants' SCTP associations (data channels) aborted because"
            " they broke the limits the server advertised.",
            totals.sctp_aborts,
        ),
        (
            "transport_feedback_sent",
            "Transport-wide congestion control feedback packets sent to"
            " publishers that estimate their own uplink.",
            totals.transport_feedback_sent,
        ),
        (
            "participants_joined",
            "Participants that joined a room.",
            totals.participants_joined,
        ),
        (
            "participants_left",
            "Participants that left a room.",
            totals.participants_left,
        ),
    ):
        yield CounterMetricFamily(f"{p}_{name}", help_text, value=value)
    cpu = CounterMetricFamily(
        f"{p}_participant_cpu_seconds",
        "CPU seconds spent on participants' signalling, data channel packets,"
        " trickled candidates and RTCP, by reason.",
        labels=["reason"],
    )
    for reason, seconds in sorted(totals.cpu_seconds.items()):
        cpu.add_metric([reason], seconds)
    yield cpu
    refused = CounterMetricFamily(
        f"{p}_signalling_errors_by_code",
        "Client messages refused with an error, by error code.",
        labels=["code"],
    )
    for code, count in sorted(totals.signalling_errors_by_code.items()):
        refused.add_metric([code], count)
    yield refused
    removed = CounterMetricFamily(
        f"{p}_participants_removed",
        "Participants the server removed for what they did, by reason (cpu_budget).",
        labels=["reason"],
    )
    for reason in REMOVAL_REASONS:
        removed.add_metric([reason], totals.participants_removed.get(reason, 0))
    yield removed
