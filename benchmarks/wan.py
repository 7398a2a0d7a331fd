"""A 2-person call over an emulated WAN, through pysfu and direct (P2P reference).

    sudo python -m benchmarks.wan                 # every scenario, both modes
    sudo python -m benchmarks.wan --scenarios clean,viewer-500k --seconds 20

Each cell builds the WAN bed of ``tests/wan`` (one network namespace per
node, joined by the user-space link emulator ``tests/wan/linkemu.py``): an
aiortc publisher (VP8, a 320x240 picture whose lower half is moving noise,
so the encoder uses all the bitrate it is allowed: aiortc's VP8 encoder
targets 250 kbit/s to 1.5 Mbit/s, following REMB) and an aiortc viewer that
decodes. ``pysfu`` runs examples/ws_sfu.py in a third namespace on a clean
link; ``p2p`` connects the two peers directly over the same links.

Per cell, over the measured window (after ``--warmup`` seconds of call):
viewer fps (mean; share of seconds under 10 fps), freezes (no new frame for
0.5 s) and their seconds, the publisher's video send rate (RTP payload), the
NACKs and PLIs the viewer sent, and the packets the emulated links dropped
(random loss, full queue). Prints a Markdown table; writes JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.wan.bed import Direction, Port, available
from tests.wan.call import CallFailed, two_person_call, wait_for

from .harness.tables import summary, table

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    publisher: Port
    viewer: Port


def _port(**down: Any) -> Port:
    return Port("", down=Direction(**down))


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("clean", "clean links", Port(""), Port("")),
        Scenario(
            "viewer-500k",
            "viewer downlink 500 kbit/s, 40 ms",
            Port(""),
            _port(rate_bps=500_000, delay_ms=40, queue_ms=300),
        ),
        Scenario(
            "loss-3pct",
            "viewer downlink 3 % loss, 50 ms",
            Port(""),
            _port(loss=0.03, delay_ms=50),
        ),
        Scenario(
            "viewer-1m-loss",
            "viewer downlink 1 Mbit/s, 1 % loss, 60 ms",
            Port(""),
            _port(rate_bps=1_000_000, loss=0.01, delay_ms=60, queue_ms=300),
        ),
        Scenario(
            "publisher-600k",
            "publisher uplink 600 kbit/s",
            Port("", up=Direction(rate_bps=600_000, queue_ms=300)),
            Port(""),
        ),
    )
}


def measure(
    scenario: Scenario, mode: str, warmup: float, seconds: float, timeout: float
) -> dict[str, Any]:
    cell: dict[str, Any] = {"scenario": scenario.name, "mode": mode}
    try:
        with two_person_call(scenario.publisher, scenario.viewer, mode=mode) as (
            bed,
            published,
            viewed,
        ):
            wait_for(
                lambda: viewed.reports() and viewed.reports()[-1]["frames"] > 0,
                timeout,
                "the viewer's first picture",
            )
            start = viewed.reports()[-1]["t"] + warmup
            wait_for(
                lambda: viewed.reports()[-1]["t"] >= start + seconds,
                timeout + warmup + seconds,
                "the measured window",
            )
            views = [r for r in viewed.reports() if r["t"] >= start]
            sends = [r for r in published.reports() if r["t"] >= start - 1]
    except CallFailed as error:
        cell["error"] = str(error)
        return cell
    links = bed.emulator_counters or {}
    per_second = [b["frames"] - a["frames"] for a, b in itertools.pairwise(views)]
    span_view = views[-1]["t"] - views[0]["t"]
    span_send = sends[-1]["t"] - sends[0]["t"]
    cell.update(
        fps=(views[-1]["frames"] - views[0]["frames"]) / span_view,
        under_10fps=sum(1 for n in per_second if n < 10) / max(len(per_second), 1),
        freezes=views[-1]["freezes"] - views[0]["freezes"],
        freeze_seconds=views[-1]["freeze_seconds"] - views[0]["freeze_seconds"],
        send_kbps=(sends[-1]["video_bytes_sent"] - sends[0]["video_bytes_sent"])
        * 8
        / span_send
        / 1000,
        remb_kbps=(sends[-1].get("remb") or 0) / 1000,
        nacks=views[-1]["nacks_sent"] - views[0]["nacks_sent"],
        plis=views[-1]["plis_sent"] - views[0]["plis_sent"],
        link_lost=sum(d["lost"] for p in links.values() for d in p.values()),
        link_queue_dropped=sum(
            d["queue_dropped"] for p in links.values() for d in p.values()
        ),
        seconds=span_view,
    )
    return cell


COLUMNS = [
    ("scenario", "scenario", "{}"),
    ("mode", "mode", "{}"),
    ("run", "run", "{}"),
    ("fps", "viewer fps", "{:.1f}"),
    ("under_10fps", "s < 10 fps", "{:.0%}"),
    ("freezes", "freezes", "{}"),
    ("freeze_seconds", "freeze s", "{:.1f}"),
    ("send_kbps", "publisher kbit/s", "{:.0f}"),
    ("remb_kbps", "last REMB kbit/s", "{:.0f}"),
    ("nacks", "NACKs", "{}"),
    ("plis", "PLIs", "{}"),
    ("link_lost", "lost (link)", "{}"),
    ("link_queue_dropped", "queue drops", "{}"),
]


SUMMARY = [
    ("fps", "viewer fps", "{:.1f}"),
    ("under_10fps", "s < 10 fps", "{:.0%}"),
    ("freeze_seconds", "freeze s", "{:.1f}"),
    ("send_kbps", "publisher kbit/s", "{:.0f}"),
    ("nacks", "NACKs", "{}"),
    ("plis", "PLIs", "{}"),
    ("link_queue_dropped", "queue drops", "{}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--modes", default="p2p,pysfu")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--runs", type=int, default=1, help="repeat every cell")
    parser.add_argument(
        "--summarize", metavar="JSON", help="only print the tables of a saved run"
    )
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/wan.json"))
    args = parser.parse_args()
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())["cells"]
        print(table(saved, COLUMNS) + "\n\n" + summary(saved, SUMMARY))
        return
    if not available():
        sys.exit("benchmarks/wan.py needs root and iproute2 (network namespaces)")
    cells = []
    for run in range(1, args.runs + 1):
        for name in args.scenarios.split(","):
            for mode in args.modes.split(","):
                cell = measure(
                    SCENARIOS[name], mode, args.warmup, args.seconds, args.timeout
                )
                cell["run"] = run
                print(json.dumps(cell), flush=True)
                cells.append(cell)
    document = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "options": vars(args),
        "scenarios": {n: SCENARIOS[n].description for n in args.scenarios.split(",")},
        "cells": cells,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(document, indent=2))
    order = list(SCENARIOS)
    cells.sort(key=lambda c: (order.index(c["scenario"]), c["mode"], c["run"]))
    print(table(cells, COLUMNS) + "\n\n" + summary(cells, SUMMARY))


if __name__ == "__main__":
    main()
