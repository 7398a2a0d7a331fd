"""A user-space WAN link emulator: an Ethernet switch with impaired ports.

This machine's kernel has no ``netem`` (only ``tbf`` among the shaping
qdiscs), so delay, jitter and random loss are made here. The emulator runs
in its own network namespace and owns one end of a veth pair per node
(publisher, server, viewer, ...); it reads every frame from those ends with
``AF_PACKET`` sockets and writes it to the port of its destination MAC
(learned from source addresses; broadcasts such as ARP go to every port).
Each port has two :class:`Direction` s: ``up`` for frames coming from its
node, ``down`` for frames going to it. A frame from A to B passes A's ``up``
then B's ``down``, each of which may:

- drop it at random (``loss``, a seeded RNG, so runs are repeatable);
- hold it behind the frames before it at ``rate`` bit/s (a FIFO bottleneck);
  a frame that would wait more than ``queue_ms`` is dropped (drop-tail);
- deliver it ``delay_ms`` later, plus up to ``jitter_ms`` at random, never
  before the frame ahead of it (no reordering).

Since each stage is a FIFO, a frame's delivery time is known as it arrives:
one thread keeps a heap of frames by delivery time and sleeps in
``select`` until the next is due or a frame arrives. Frames are read and
written with a virtio-net header (``PACKET_VNET_HDR``), so TCP segments the
kernel left unsegmented (GSO) and checksums it left to the "hardware" pass
through intact.

Run in the emulator's namespace: ``python -m tests.wan.linkemu CONFIG.json``
(see :func:`main`); it prints its counters as one JSON line on SIGTERM.
"""

from __future__ import annotations

import heapq
import json
import random
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10
ETH_P_IP = 0x0800


@dataclass(frozen=True)
class Direction:
    """One direction of a link (None/0: unimpaired)."""

    rate_bps: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    queue_ms: float = 200.0


@dataclass(frozen=True)
class Port:
    """One node's link: the emulator's veth end and the two directions."""

    ifname: str
    up: Direction = Direction()
    down: Direction = Direction()


@dataclass
class StageCounters:
    frames: int = 0
    bytes: int = 0
    lost: int = 0
    queue_dropped: int = 0


class Stage:
    """One direction's loss, bottleneck queue and delay (times in seconds)."""

    def __init__(self, direction: Direction, rng: random.Random) -> None:
        self.direction = direction
        self.rng = rng
        self.counters = StageCounters()
        self._free_at = 0.0  # when the bottleneck finishes the last frame
        self._last_delivery = 0.0

    def admit(self, size: int, arrival: float, droppable: bool = True) -> float | None:
        """The time the frame leaves this stage, or None if it is dropped."""
        d = self.direction
        if droppable and d.loss and self.rng.random() < d.loss:
            self.counters.lost += 1
            return None
        departure = arrival
        if d.rate_bps:
            start = max(arrival, self._free_at)
            if droppable and start - arrival > d.queue_ms / 1000:
                self.counters.queue_dropped += 1
                return None
            departure = self._free_at = start + size * 8 / d.rate_bps
        delivery = departure + d.delay_ms / 1000
        if d.jitter_ms:
            delivery += self.rng.random() * d.jitter_ms / 1000
        delivery = self._last_delivery = max(delivery, self._last_delivery)
        self.counters.frames += 1
        self.counters.bytes += size
        return delivery


@dataclass
class Switch:
    """The emulator: ports, MAC learning, the delivery heap."""

    ports: list[Port]
    seed: int = 1
    _sockets: list[socket.socket] = field(default_factory=list)
    _up: list[Stage] = field(default_factory=list)
    _down: list[Stage] = field(default_factory=list)
    _macs: dict[bytes, int] = field(default_factory=dict)
    _heap: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _order: int = 0
    _stopped: bool = False
    #: set by SIGUSR1: re-read the links from this file (a mid-call change)
    config_path: str | None = None
    _reload: bool = False

    def open(self) -> None:
        rng = random.Random(self.seed)
        for port in self.ports:
            sock = socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
            )
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((port.ifname, 0))
            sock.setblocking(False)
            self._sockets.append(sock)
            self._up.append(Stage(port.up, rng))
            self._down.append(Stage(port.down, rng))

    def stop(self, *_: Any) -> None:
        self._stopped = True

    def request_reload(self, *_: Any) -> None:
        self._reload = True

    def reload(self) -> None:
        """Give every stage its new direction (queues and counters stay)."""
        self._reload = False
        assert self.config_path is not None
        with open(self.config_path) as f:
            ports = parse_config(json.load(f)).ports
        for i, port in enumerate(ports):
            self._up[i].direction = port.up
            self._down[i].direction = port.down
        print(json.dumps({"reloaded": True}), flush=True)

    def run(self) -> None:
        sockets = self._sockets
        index_of = {sock.fileno(): i for i, sock in enumerate(sockets)}
        while not self._stopped:
            if self._reload:
                self.reload()
            timeout = 0.5
            if self._heap:
                timeout = max(self._heap[0][0] - time.monotonic(), 0.0)
            try:
                readable, _, _ = select.select(sockets, [], [], timeout)
            except InterruptedError:
                continue
            for sock in readable:
                self._receive(index_of[sock.fileno()], sock)
            self._deliver(time.monotonic())

    def _receive(self, source: int, sock: socket.socket) -> None:
        for _ in range(64):  # bounded, so deliveries are not starved
            try:
                data, address = sock.recvfrom(70000)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue  # our own write to this port
            self._route(source, data, time.monotonic())

    def _route(self, source: int, data: bytes, now: float) -> None:
        frame = memoryview(data)[VNET_HDR_LEN:]
        if len(frame) < 14:
            return
        destination_mac, source_mac = bytes(frame[0:6]), bytes(frame[6:12])
        self._macs[source_mac] = source
        ethertype = (frame[12] << 8) | frame[13]
        droppable = ethertype == ETH_P_IP  # ARP and the like are never lost
        size = len(frame) + 24  # preamble, FCS and gap, as on a wire
        target = self._macs.get(destination_mac)
        targets = (
            [target]
            if target is not None and not destination_mac[0] & 1
            else [i for i in range(len(self.ports)) if i != source]
        )
        leaving = self._up[source].admit(size, now, droppable)
        if leaving is None:
            return
        for port in targets:
            if port == source:
                continue
            arriving = self._down[port].admit(size, leaving, droppable)
            if arriving is not None:
                self._order += 1
                heapq.heappush(self._heap, (arriving, self._order, port, data))

    def _deliver(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, port, data = heapq.heappop(heap)
            try:
                self._sockets[port].send(data)
            except OSError:
                self._down[port].counters.queue_dropped += 1  # the veth refused

    def counters(self) -> dict[str, Any]:
        return {
            port.ifname: {
                "up": asdict(self._up[i].counters),
                "down": asdict(self._down[i].counters),
            }
            for i, port in enumerate(self.ports)
        }


def parse_config(config: dict[str, Any]) -> Switch:
    """``{"seed": 1, "ports": [{"ifname": ..., "up": {Direction fields},
    "down": {...}}, ...]}``"""
    ports = [
        Port(
            p["ifname"],
            Direction(**p.get("up", {})),
            Direction(**p.get("down", {})),
        )
        for p in config["ports"]
    ]
    return Switch(ports, seed=int(config.get("seed", 1)))


def main() -> None:
    with open(sys.argv[1]) as f:
        switch = parse_config(json.load(f))
    switch.config_path = sys.argv[1]
    switch.open()
    signal.signal(signal.SIGUSR1, switch.request_reload)
    signal.signal(signal.SIGTERM, switch.stop)
    signal.signal(signal.SIGINT, switch.stop)
    print(json.dumps({"ready": True}), flush=True)
    switch.run()
    print(json.dumps({"counters": switch.counters()}), flush=True)


if __name__ == "__main__":
    main()
