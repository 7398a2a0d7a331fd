"""What waking a sleeping process costs on this machine, charged to the sender.

An SFU's CPU per packet includes the kernel's work on each ``sendto``: on
loopback that is the whole delivery to the receiving socket, and, when the
receiving process sleeps in ``epoll_wait``, waking it (on a virtual machine
an inter-processor interrupt, which may exit to the hypervisor). How much
that costs differs a lot between machines, and it falls on every server
alike (pysfu, Janus), so it compresses their ratios. This measures it:
user + system CPU time of one ``sendto`` of 1,100 bytes to a UDP socket on
127.0.0.1 whose reader is another process that

- ``busy``: never sleeps (sends back to back; the reader is still draining);
- ``gap X ms``: sleeps in ``epoll_wait`` until the datagram arrives, the
  sender pausing X ms between sends so the reader is asleep each time.

    python -m benchmarks.wakeup [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import time
from pathlib import Path

PAYLOAD = b"x" * 1100
GAPS_MS = (0.5, 2.0, 10.0)
QUIT = b"q"


def reader(sock: socket.socket) -> None:
    """Sleep in epoll until datagrams arrive, drain them; exit on ``QUIT``."""
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    sock.setblocking(False)
    while True:
        poller.poll()
        try:
            while True:
                if sock.recv(2048) == QUIT:
                    os._exit(0)
        except BlockingIOError:
            pass


def cost_of_sends(
    sender: socket.socket, address: tuple[str, int], count: int, gap: float
) -> float:
    """Median CPU µs of one ``sendto``, pausing ``gap`` s between sends."""
    costs = []
    for _ in range(count):
        if gap:
            time.sleep(gap)
        start = time.process_time()
        sender.sendto(PAYLOAD, address)
        costs.append(time.process_time() - start)
    return statistics.median(costs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="sends per case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    receiving = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiving.bind(("127.0.0.1", 0))
    receiving.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    address = receiving.getsockname()
    pid = os.fork()
    if pid == 0:
        reader(receiving)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    results = {"busy": cost_of_sends(sender, address, args.count * 10, 0.0)}
    for gap_ms in GAPS_MS:
        results[f"gap {gap_ms:g} ms"] = cost_of_sends(
            sender, address, args.count, gap_ms / 1000
        )
    sender.sendto(QUIT, address)
    os.waitpid(pid, 0)
    print("CPU of one sendto (1,100 bytes, 127.0.0.1), median µs")
    for case, micros in results.items():
        print(f"  {case:<14} {micros:6.1f}")
    if args.json:
        args.json.write_text(json.dumps({"sendto_cpu_us": results}, indent=2))


if __name__ == "__main__":
    main()
