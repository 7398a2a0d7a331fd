"""A WAN test bed: one network namespace per node, joined by the link emulator.

::

    slow = Port("", down=Direction(rate_bps=500_000, delay_ms=40))
    with WanBed({"server": Port(""), "viewer": slow}) as bed:
        bed.address("server")          # 10.77.0.1
        process = bed.spawn("viewer", [sys.executable, "-m", ...])

Every node gets ``eth0`` with ``10.77.0.N/24`` in a namespace of its own,
plus loopback; the other end of its veth sits in the switch namespace,
where :mod:`tests.wan.linkemu` runs. Addresses exist only inside these
namespaces, so nothing leaves the machine. Everything is removed on exit:
processes the bed started are stopped by pid (SIGTERM, then SIGKILL), then
the namespaces are deleted (which deletes the veths).

Needs root (``ip netns``), like the rest of the namespace-based tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .linkemu import Direction, Port

__all__ = ["Direction", "Port", "WanBed", "available"]

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.77.0"


def available() -> bool:
    """Whether this machine can build the bed (root, ``ip``, veth, netns)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class WanBed:
    """Namespaces, veths and the emulator; use as a context manager.

    ``links``: node name -> its link (``Port.ifname`` is ignored: the bed
    names the interfaces). ``seed``: the emulator's loss/jitter RNG seed.
    """

    def __init__(self, links: Mapping[str, Port], seed: int = 1) -> None:
        self.links = dict(links)
        self.seed = seed
        tag = f"{os.getpid() % 100000}"
        self.switch_ns = f"pysfu-wan{tag}-sw"
        self.namespaces = {name: f"pysfu-wan{tag}-{name}" for name in self.links}
        self._addresses = {
            name: f"{SUBNET}.{i + 1}" for i, name in enumerate(self.links)
        }
        self._processes: list[subprocess.Popen[bytes]] = []
        self._emulator: subprocess.Popen[str] | None = None
        self._dir = tempfile.mkdtemp(prefix="pysfu-wan-")
        self.emulator_counters: dict[str, Any] | None = None

    def address(self, node: str) -> str:
        return self._addresses[node]

    def __enter__(self) -> WanBed:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _build(self) -> None:
        _ip("netns", "add", self.switch_ns)
        _ip("-n", self.switch_ns, "link", "set", "lo", "up")
        ports = []
        for i, (name, link) in enumerate(self.links.items()):
            ns = self.namespaces[name]
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            node_end, switch_end = f"pwn{os.getpid() % 10000}n{i}", f"p{i}"
            _ip(
                "link",
                "add",
                node_end,
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                switch_end,
                "netns",
                self.switch_ns,
            )
            _ip("-n", ns, "link", "set", node_end, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self._addresses[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.switch_ns, "link", "set", switch_end, "promisc", "on")
            _ip("-n", self.switch_ns, "link", "set", switch_end, "up")
            ports.append(
                {"ifname": switch_end, "up": asdict(link.up), "down": asdict(link.down)}
            )
        config = Path(self._dir) / "links.json"
        config.write_text(json.dumps({"seed": self.seed, "ports": ports}))
        self._emulator = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.switch_ns,
                sys.executable,
                "-m",
                "tests.wan.linkemu",
                str(config),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._emulator.stdout is not None
        line = self._emulator.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError("the link emulator did not start")

    def set_link(self, node: str, link: Port) -> None:
        """Change ``node``'s link mid-call (the emulator re-reads its links)."""
        self.links[node] = link
        config = Path(self._dir) / "links.json"
        document = json.loads(config.read_text())
        index = list(self.links).index(node)
        document["ports"][index].update(up=asdict(link.up), down=asdict(link.down))
        config.write_text(json.dumps(document))
        assert self._emulator is not None and self._emulator.stdout is not None
        self._emulator.send_signal(signal.SIGUSR1)
        # applied from the emulator's next turn (within 0.5 s): wait for it
        for line in self._emulator.stdout:
            if json.loads(line).get("reloaded"):
                break

    def spawn(
        self,
        node: str,
        argv: Sequence[str],
        *,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node``'s namespace (stopped on close)."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[node], *argv],
            cwd=ROOT,
            stdout=stdout,
            env={**os.environ, **(env or {})},
        )
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 10) -> None:
        """SIGTERM ``process`` (by pid), SIGKILL if it does not exit."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        for process in reversed(self._processes):
            self.stop(process)
        self._processes.clear()
        if self._emulator is not None:
            self.stop(self._emulator)
            assert self._emulator.stdout is not None
            for line in self._emulator.stdout:
                if line.startswith("{") and "counters" in (record := json.loads(line)):
                    self.emulator_counters = record["counters"]
            self._emulator = None
        for ns in [*self.namespaces.values(), self.switch_ns]:
            # what our processes left running in our namespaces (a browser's
            # helpers, say): nothing else can be in them
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)
