"""Markdown tables from a ``run.py`` JSON file, for docs/performance.md.

python -m benchmarks.report benchmarks/results/suite.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def markdown_table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], left: int = 1
) -> str:
    """A Markdown table; the first ``left`` columns are text (left-aligned)."""
    lines = [
        "| " + " | ".join(title for title, _, _ in columns) + " |",
        "|"
        + "|".join("---" if i < left else "---:" for i in range(len(columns)))
        + "|",
    ]
    for row in rows:
        if row.get("error"):
            first = [cell(row.get(key), spec) for _, key, spec in columns[:2]]
            rest = [f"failed: {row['error']}"] + [""] * (len(columns) - 3)
            lines.append("| " + " | ".join(first + rest) + " |")
        else:
            cells = [cell(row.get(key), spec) for _, key, spec in columns]
            if row.get("problems"):  # connections lost during the case
                cells[0] += " (!)"
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FANOUT = [
    ("mode", "mode", ""),
    ("subscribers", "subscribers", "d"),
    ("forwarded pkt/s", "forwarded_pps", ".0f"),
    ("server µs/pkt", "server_cpu_us_per_packet", ".1f"),
    ("server CPU %", "server_cpu_percent", ".1f"),
    ("idle CPU %", "idle_cpu_percent", ".1f"),
    ("wake-ups per inbound pkt", "wakeups_per_inbound_packet", ".2f"),
    ("loss %", "loss_percent", ".2f"),
    ("delivered %", "delivered_percent", ".1f"),
    ("peak RSS MB", "server_peak_rss_mb", ".1f"),
    ("latency p50 ms", "latency_p50_ms", ".2f"),
    ("p95 ms", "latency_p95_ms", ".2f"),
    ("p99 ms", "latency_p99_ms", ".2f"),
]
ROOMS = [
    ("mode", "mode", ""),
    ("rooms", "rooms", "d"),
    ("forwarded pkt/s", "forwarded_pps", ".0f"),
    ("pkt per CPU-s", "packets_per_cpu_second", ".0f"),
    ("server µs/pkt", "server_cpu_us_per_packet", ".1f"),
    ("server CPU %", "server_cpu_percent", ".1f"),
    ("wake-ups per inbound pkt", "wakeups_per_inbound_packet", ".2f"),
    ("loss %", "loss_percent", ".2f"),
    ("delivered %", "delivered_percent", ".1f"),
    ("peak RSS MB", "server_peak_rss_mb", ".1f"),
]
LATEJOIN = [
    ("mode", "mode", ""),
    ("joins", "joins", "d"),
    ("subscribe -> keyframe, median ms", "median_from_subscribe_ms", ".0f"),
    ("max ms", "max_from_subscribe_ms", ".0f"),
    ("connected -> keyframe, median ms", "median_from_connected_ms", ".0f"),
]
RATIOS = [
    ("part", "part", ""),
    ("case", "case", ""),
    ("metric", "metric", ""),
    ("pysfu", "pysfu", ".2f"),
    ("mux", "mux", ".2f"),
    ("relay", "relay", ".2f"),
    ("janus", "janus", ".2f"),
    ("pysfu/janus", "pysfu/janus", ".2f"),
    ("mux/pysfu", "mux/pysfu", ".2f"),
    ("mux/janus", "mux/janus", ".2f"),
    ("relay/pysfu", "relay/pysfu", ".1f"),
]


def render(document: dict[str, Any]) -> str:
    results = document["results"]
    out: list[str] = []
    fanout = [r for r in results["fanout"] if r.get("repeat", 0) == 0]
    if fanout:
        out += ["### Fan-out: 1 publisher -> N subscribers", ""]
        out += [markdown_table(fanout, FANOUT), ""]
        slopes = document.get("marginal_us_per_packet", {})
        costs = ", ".join(f"{m} {v:.1f} µs" for m, v in slopes.items() if v)
        if costs:
            out += [f"Marginal server CPU per extra forwarded packet: {costs}.", ""]
        for mode, s in document.get("noise", {}).items():
            out.append(
                f"- {mode}, {s['runs']} runs at "
                f"{document['settings']['repeat_at']} subscribers: "
                f"{s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f} µs/pkt "
                f"(min / median / max; spread {s['spread_percent']:.0f} %)"
            )
        out.append("")
    if results["rooms"]:
        out += ["### Rooms: host + participant, both publishing audio and video", ""]
        out += [markdown_table(results["rooms"], ROOMS), ""]
    if results["latejoin"]:
        out += ["### Late joiner: subscribe -> first complete keyframe", ""]
        out += [markdown_table(results["latejoin"], LATEJOIN), ""]
    if results["memory"]:
        out += ["### Memory: server RSS as subscribers are added", ""]
        steps = sorted({n for r in results["memory"] for n in r["steps"]})
        columns = ["mode", *(f"{n} subs MB" for n in steps), "MB per subscriber"]
        out += ["| " + " | ".join(columns) + " |"]
        out += ["|---" + "|---:" * (len(columns) - 1) + "|"]
        for r in results["memory"]:
            if r.get("error"):
                out.append(f"| {r['mode']} | failed: {r['error']} |")
                continue
            rss = dict(zip(r["steps"], r["rss_mb"], strict=True))
            cells = [cell(rss.get(n), ".1f") for n in steps]
            slope = cell(r["mb_per_subscriber"], ".2f")
            out.append(f"| {r['mode']} | " + " | ".join([*cells, slope]) + " |")
        out.append("")
    rows = []
    for part, entries in document.get("ratios", {}).items():
        for entry in entries:
            case = ", ".join(
                f"{k} {v}" for k, v in entry.items() if k in ("subscribers", "rooms")
            )
            rows.append({**entry, "part": part, "case": case})
    if rows:
        out += ["### Ratios", ""]
        out += [markdown_table(rows, RATIOS, left=3), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path)
    args = parser.parse_args()
    print(render(json.loads(args.json.read_text())))


if __name__ == "__main__":
    main()
