"""Two headless Chromiums on an emulated WAN: a direct call (P2P) and a call
through ``pysfu serve`` (with and without simulcast).

    sudo python benchmarks/wan_chromium.py --runs 3
    sudo python benchmarks/wan_chromium.py --scenarios clean --modes pysfu

Each cell builds the WAN bed of ``tests/wan`` (a network namespace per node,
joined by the user-space link emulator) with a publisher, a viewer and a
server node; see ``tests/wan/chromium.py``. The publisher's camera is a
detailed, moving 1280x720 y4m file at 30 fps. ``p2p``: the two pages call
each other directly (a signalling page of the benchmark's own on the server
node); ``pysfu``: the publisher hosts a room of ``python -m pysfu serve``'s
own page (pysfu-client.js) and the viewer joins it; ``simulcast``: the same
with ``--simulcast`` (Chromium sends the rids q, h, f the server offers);
``pysfu-remb``: ``pysfu`` with ``--no-transport-cc`` (the publisher held to
pysfu's own uplink estimate, as before transport-wide feedback).
The viewer sends audio only (a 2-core machine runs both browsers).

Per cell, over ``--seconds`` after ``--warmup`` seconds of decoding, from
the viewer's ``getStats()`` (inbound-rtp): decoded fps, seconds under
10 fps, Chromium's freeze count and duration, the picture height (median of
the per-second samples); the publisher's video send rate; the machine's load
average; per simulcast layer, its encoded fps and encoder target (JSON only).
``bad-midcall`` measures the window after the viewer's link turns from clean
to 1 Mbit/s + 1 % loss + 60 ms.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.wan.bed import Direction, Port, available  # noqa: E402
from tests.wan.call import CallFailed, Lines, wait_for  # noqa: E402
from tests.wan.chromium import chromium_call, frames  # noqa: E402

from .harness.tables import summary, table  # noqa: E402


def _down(**down: Any) -> Port:
    return Port("", down=Direction(**down))


BAD = _down(rate_bps=1_000_000, loss=0.01, delay_ms=60, queue_ms=300)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    viewer: Port
    #: the viewer's link once the measured window starts (None: unchanged)
    then: Port | None = None
    #: more viewers on clean links (a room of 2 + others; not with p2p)
    others: int = 0
    #: the publisher's link
    publisher: Port = field(default_factory=lambda: Port(""))


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("clean", "clean links", Port("")),
        Scenario("viewer-1m-loss", "viewer downlink 1 Mbit/s, 1 % loss, 60 ms", BAD),
        Scenario(
            "viewer-500k",
            "viewer downlink 500 kbit/s, 40 ms",
            _down(rate_bps=500_000, delay_ms=40, queue_ms=300),
        ),
        Scenario(
            "loss-3pct",
            "viewer downlink 3 % loss, 50 ms",
            _down(loss=0.03, delay_ms=50),
        ),
        Scenario(
            "bad-midcall",
            "viewer downlink clean, then 1 Mbit/s, 1 % loss, 60 ms",
            Port(""),
            then=BAD,
        ),
        Scenario(
            "publisher-600k",
            "publisher uplink 600 kbit/s, 40 ms",
            Port(""),
            publisher=Port(
                "", up=Direction(rate_bps=600_000, delay_ms=40, queue_ms=300)
            ),
        ),
        Scenario(
            "room4-500k",
            "a room of four: the publisher, the viewer on 500 kbit/s, 40 ms, "
            "two viewers on clean links",
            _down(rate_bps=500_000, delay_ms=40, queue_ms=300),
            others=2,
        ),
    )
}


def _fps(viewed: Any, start: float) -> float | None:
    """A viewer's decoded frames per second since ``start``."""
    views = [r for r in viewed.reports() if r["t"] >= start - 0.5 and r["inbound"]]
    if len(views) < 2:
        return None
    span = views[-1]["t"] - views[0]["t"]
    return (views[-1]["inbound"]["frames"] - views[0]["inbound"]["frames"]) / span


def _layer_fps(sends: list[dict[str, Any]]) -> dict[str, float]:
    """Each layer's (rid's) encoded frames per second over the window."""
    first = {o.get("rid") or "-": o for o in sends[0]["outbound"]}
    span = sends[-1]["t"] - sends[0]["t"]
    return {
        rid: round((o["frames"] - first[rid]["frames"]) / span, 1)
        for o in sends[-1]["outbound"]
        if (rid := o.get("rid") or "-") in first and span > 0
    }


def _timeline(sends: list[dict[str, Any]], origin: float) -> list[dict[str, Any]]:
    """The publisher's video sender, second by second (``--trace``)."""
    out = []
    for r in sends:
        video = r["outbound"][0] if r["outbound"] else {}
        remote = r.get("remote") or {}
        out.append(
            {
                "t": round(r["t"] - origin, 1),
                "height": video.get("height"),
                "fps": video.get("fps"),
                "target": video.get("target"),
                "available": r.get("available"),
                "limited": video.get("limited"),
                "cpu_s": (video.get("limited_seconds") or {}).get("cpu"),
                "bw_s": (video.get("limited_seconds") or {}).get("bandwidth"),
                "fraction_lost": remote.get("fraction_lost"),
                "lost": remote.get("lost"),
                "rtt": remote.get("rtt"),
            }
        )
    return out


def _server_trace(lines: Lines, origin: float) -> dict[str, Any]:
    """What pysfu told the publisher and why (``--trace``)."""
    rembs = [
        {**r, "remb": round(r["remb"] - origin, 2)}
        for r in lines.records
        if "remb" in r and "tracks" not in r
    ]
    samples = [
        {"t": round(r["t"] - origin, 1), "tracks": r["tracks"]}
        for r in lines.records
        if "tracks" in r
    ]
    return {
        "rembs": rembs,
        "sources": dict(collections.Counter(r["source"] for r in rembs)),
        "samples": samples,
    }


def measure(
    scenario: Scenario,
    mode: str,
    warmup: float,
    seconds: float,
    timeout: float,
    trace: bool = False,
) -> dict[str, Any]:
    cell: dict[str, Any] = {"scenario": scenario.name, "mode": mode}
    server_trace = Lines() if trace and mode != "p2p" else None
    links = {"publisher": scenario.publisher, "viewer": scenario.viewer}
    others = [f"other{n}" for n in range(1, scenario.others + 1)]
    if others and mode == "p2p":
        cell["error"] = "p2p has one viewer"
        return cell
    links.update({name: Port("") for name in others})
    try:
        with chromium_call(
            links,
            mode="p2p" if mode == "p2p" else "pysfu",
            simulcast=mode == "simulcast",
            # pysfu-remb: as before transport-cc, pysfu's own uplink estimate
            server_args=["--no-transport-cc"] if mode == "pysfu-remb" else [],
            server_trace=server_trace,
        ) as (bed, published, viewers):
            origin = time.monotonic()
            viewed = viewers["viewer"]
            wait_for(lambda: frames(viewed) > 0, timeout, "the viewer's first picture")
            time.sleep(warmup)
            if scenario.then is not None:
                bed.set_link("viewer", scenario.then)
            start = time.monotonic()
            load_start = os.getloadavg()[0]
            time.sleep(seconds)
            load_end = os.getloadavg()
            views = [
                r for r in viewed.reports() if r["t"] >= start - 0.5 and r["inbound"]
            ]
            # the clean viewers' decoded fps (room scenarios)
            others_fps = [_fps(viewers[name], start) for name in others]
            sends = [r for r in published.reports() if r["t"] >= start - 0.5]
            everything = published.reports()
    except CallFailed as error:
        cell["error"] = str(error)
        return cell
    if len(views) < 2 or len(sends) < 2:
        cell["error"] = "no reports in the window"
        return cell
    first, last = views[0]["inbound"], views[-1]["inbound"]
    span = views[-1]["t"] - views[0]["t"]
    per_second = [
        (b["inbound"]["frames"] - a["inbound"]["frames"]) / (b["t"] - a["t"])
        for a, b in itertools.pairwise(views)
    ]
    sent = sum(o["bytes"] for o in sends[-1]["outbound"]) - sum(
        o["bytes"] for o in sends[0]["outbound"]
    )
    cell.update(
        fps=(last["frames"] - first["frames"]) / span,
        under_10fps=sum(1 for n in per_second if n < 10) / max(len(per_second), 1),
        freezes=last["freezes"] - first["freezes"],
        freeze_seconds=last["freeze_seconds"] - first["freeze_seconds"],
        height=statistics.median(r["inbound"]["height"] for r in views),
        heights=sorted({r["inbound"]["height"] for r in views}),
        send_kbps=sent * 8 / (sends[-1]["t"] - sends[0]["t"]) / 1000,
        layers={o.get("rid") or "-": o["height"] for o in sends[-1]["outbound"]},
        # frames encoded per second, per layer (rid): what a viewer can get
        layer_fps=_layer_fps(sends),
        # each layer's encoder target (bit/s) and the share of the window
        # spent encoding it: starved by bitrate or by CPU
        layer_targets={
            o.get("rid") or "-": o.get("target") for o in sends[-1]["outbound"]
        },
        # what the page set on each encoding (maxBitrate, maxFramerate)
        encodings=sends[-1].get("encodings"),
        encode_busy=round(
            (
                sum(o.get("encode_seconds", 0) for o in sends[-1]["outbound"])
                - sum(o.get("encode_seconds", 0) for o in sends[0]["outbound"])
            )
            / max(sends[-1]["t"] - sends[0]["t"], 1e-9),
            2,
        ),
        source_fps=round(
            (sends[-1].get("source_frames", 0) - sends[0].get("source_frames", 0))
            / max(sends[-1]["t"] - sends[0]["t"], 1e-9),
            1,
        ),
        available=sends[-1].get("available"),
        limited=collections.Counter(
            o["limited"] for r in sends for o in r["outbound"]
        ).most_common(1)[0][0]
        if sends[-1]["outbound"]
        else None,
        others_fps=[None if f is None else round(f, 1) for f in others_fps],
        nacks=last["nacks"] - first["nacks"],
        plis=last["plis"] - first["plis"],
        load=max(load_start, load_end[0]),
        seconds=span,
        links=bed.emulator_counters,
        publisher_height=statistics.median(
            r["outbound"][0]["height"] for r in sends if r["outbound"]
        ),
        publisher_limited_s={
            reason: round(
                (sends[-1]["outbound"][0].get("limited_seconds") or {}).get(reason, 0)
                - (sends[0]["outbound"][0].get("limited_seconds") or {}).get(reason, 0),
                1,
            )
            for reason in ("none", "cpu", "bandwidth", "other")
        }
        if sends[0]["outbound"] and sends[-1]["outbound"]
        else None,
        # ICE restarts the pages asked for (pysfu-client.js; 0 for p2p)
        ice_restarts={
            "publisher": sends[-1].get("ice_restarts", 0),
            "viewer": views[-1].get("ice_restarts", 0),
        },
        publisher_fraction_lost=max(
            (r.get("remote") or {}).get("fraction_lost", 0) for r in sends
        ),
    )
    if trace:
        cell["timeline"] = _timeline(everything, origin)
        if server_trace is not None:
            cell["server"] = _server_trace(server_trace, origin)
    return cell


COLUMNS = [
    ("scenario", "scenario", "{}"),
    ("mode", "mode", "{}"),
    ("run", "run", "{}"),
    ("fps", "viewer fps", "{:.1f}"),
    ("under_10fps", "s < 10 fps", "{:.0%}"),
    ("freezes", "freezes", "{}"),
    ("freeze_seconds", "freeze s", "{:.1f}"),
    ("height", "height", "{:.0f}"),
    ("send_kbps", "publisher kbit/s", "{:.0f}"),
    ("limited", "encoder limited by", "{}"),
    ("nacks", "NACKs", "{}"),
    ("plis", "PLIs", "{}"),
    ("load", "load (1 min)", "{:.1f}"),
]


#: kept in the JSON, too long to print
TRACED = ("timeline", "server")

SUMMARY = [
    ("fps", "viewer fps", "{:.1f}"),
    ("under_10fps", "s < 10 fps", "{:.0%}"),
    ("freeze_seconds", "freeze s", "{:.1f}"),
    ("height", "height", "{:.0f}"),
    ("send_kbps", "publisher kbit/s", "{:.0f}"),
    ("limited", "limited by", "{}"),
    ("load", "load", "{:.1f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--modes", default="p2p,pysfu,simulcast")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--runs", type=int, default=1, help="repeat every cell")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="keep the publisher's sender stats second by second and the "
        "server's REMB decisions (tests/wan/traced_serve.py) in the JSON",
    )
    parser.add_argument(
        "--summarize", metavar="JSON", help="only print the tables of a saved run"
    )
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks/results/wan_chromium.json")
    )
    args = parser.parse_args()
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())["cells"]
        print(table(saved, COLUMNS) + "\n\n" + summary(saved, SUMMARY))
        return
    # a SIGTERM unwinds the bed (its processes, its namespaces) like Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    if not available():
        sys.exit("benchmarks/wan_chromium.py needs root and iproute2 (namespaces)")
    cells = []
    for run in range(1, args.runs + 1):
        for name in args.scenarios.split(","):
            for mode in args.modes.split(","):
                cell = measure(
                    SCENARIOS[name],
                    mode,
                    args.warmup,
                    args.seconds,
                    args.timeout,
                    trace=args.trace,
                )
                cell["run"] = run
                shown = {k: v for k, v in cell.items() if k not in TRACED}
                print(json.dumps(shown), flush=True)
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
