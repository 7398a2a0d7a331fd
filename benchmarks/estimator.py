"""The REMB estimator alone: CPU per packet of aiortc's and pysfu's.

Feeds the same synthetic arrival traces to

- ``aiortc``: aiortc's ``RemoteBitrateEstimator`` as shipped;
- ``aiortc+window``: the same with pysfu's ``WindowedRate`` as its incoming
  rate counter (what pysfu ran until 2026-12-07);
- ``pysfu``: :class:`pysfu.rtp.estimator.RembEstimator`;

and reports ``time.process_time()`` per packet, the minimum and the median
of ``--runs`` passes over each trace (the minimum is what the code costs; the
median shows the load). Every pass also checks that all three report the
same estimates. Traces (arrival ms, abs-send-time, size):

- ``live``: 60 s of 30 fps video at ~1 Mbit/s, 4 packets per frame,
  arrivals spread over 1-2 ms;
- ``congested``: the same with a queue growing for 4 s, then draining
  (over-use: an estimate for every packet while it lasts);
- ``hotpath``: what ``benchmarks.hotpath`` feeds: batches of 400 packets
  30 µs apart, 1 s apart (each batch arrives in ~12 ms).

    python -m benchmarks.estimator [--runs 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc.rate import RemoteBitrateEstimator

from pysfu._aiortc.bitrate import WindowedRate
from pysfu.rtp.estimator import RembEstimator

Trace = list[tuple[int, int, int]]
AST_PER_SECOND = 1 << 18


def live(congested: bool = False, seconds: int = 60) -> Trace:
    rng = random.Random(1)
    trace = []
    queue = 0.0
    for frame in range(seconds * 30):
        sent_ms = frame * 1000 / 30
        if congested and 300 <= frame < 420:
            queue += rng.uniform(0, 3)
        else:
            queue = max(queue - 2, 0)
        ast = int(sent_ms / 1000 * AST_PER_SECOND) & 0xFFFFFF
        for _ in range(4):
            arrival = int(sent_ms + 20 + queue + rng.uniform(0, 2))
            trace.append((arrival, ast, rng.randint(900, 1150)))
    return sorted(trace, key=lambda packet: packet[0])


def hotpath(batches: int = 30) -> Trace:
    trace = []
    now = 0.0
    frame = 0
    for _ in range(batches):
        for _ in range(100):
            for _ in range(4):
                trace.append((int(now), (frame * 4000) & 0xFFFFFF, 1150))
                now += 0.03
            frame += 1
        now += 1000
    return trace


def aiortc_windowed() -> RemoteBitrateEstimator:
    estimator = RemoteBitrateEstimator()
    estimator.incoming_bitrate = WindowedRate(1000, 8000)  # type: ignore[assignment]
    return estimator


ESTIMATORS: dict[str, Callable[[], Any]] = {
    "aiortc": RemoteBitrateEstimator,
    "aiortc+window": aiortc_windowed,
    "pysfu": RembEstimator,
}


def one_pass(make: Callable[[], Any], trace: Trace) -> tuple[float, list[Any]]:
    """CPU seconds for the trace, and every report."""
    add = make().add
    reports = []
    start = time.process_time()
    for arrival, ast, size in trace:
        # keywords, as the forwarder calls it
        reports.append(
            add(arrival_time_ms=arrival, abs_send_time=ast, payload_size=size, ssrc=1)
        )
    return time.process_time() - start, reports


def run(runs: int) -> dict[str, Any]:
    traces = {"live": live(), "congested": live(congested=True), "hotpath": hotpath()}
    result: dict[str, Any] = {"runs": runs, "traces": {}}
    for name, trace in traces.items():
        samples: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
        estimates = 0
        for _ in range(runs):
            seen = None
            for estimator, make in ESTIMATORS.items():  # interleaved
                cpu, reports = one_pass(make, trace)
                samples[estimator].append(cpu / len(trace) * 1e6)
                if seen is not None and reports != seen:
                    raise AssertionError(f"{estimator} differs on {name}")
                seen = reports
            estimates = sum(r is not None for r in seen or [])
        result["traces"][name] = {
            "packets": len(trace),
            "estimates": estimates,
            "us_per_packet": {
                e: {"min": round(min(s), 3), "median": round(statistics.median(s), 3)}
                for e, s in samples.items()
            },
        }
    return result


def print_table(result: dict[str, Any]) -> None:
    names = list(ESTIMATORS)
    print(f"µs per packet, min / median of {result['runs']} passes")
    print(
        f"{'trace':>10} {'packets':>8} {'REMBs':>6} "
        + " ".join(f"{n:>16}" for n in names)
    )
    for trace, row in result["traces"].items():
        cpu = row["us_per_packet"]
        cells = " ".join(
            f"{cpu[n]['min']:>7.2f} / {cpu[n]['median']:<6.2f}" for n in names
        )
        print(f"{trace:>10} {row['packets']:>8} {row['estimates']:>6} {cells}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).parent / "results" / "estimator.json",
    )
    args = parser.parse_args(argv)
    result = run(args.runs)
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[estimator] wrote {args.json}")


if __name__ == "__main__":
    main()
