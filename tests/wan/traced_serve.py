"""``pysfu serve`` with a trace of its congestion control, for the WAN bed.

    python -m tests.wan.traced_serve [pysfu serve options]

Runs the app as ``pysfu serve`` does and prints JSON lines on stdout:

- ``{"remb": ...}`` each time the REMB policy is asked what to tell a video
  publisher: pysfu's uplink estimate (``own``), the cap, the subscribers'
  fresh REMBs (``subs``) and the answer (``out``), with the source of the
  answer (``own``, ``sub``, ``floor``, ``cap``);
- ``{"t": ..., "tracks": [...]}`` every ``--trace-interval`` seconds, from
  :meth:`pysfu.SFU.stats`: per published video track the last REMB sent,
  the uplink estimate and the loss pysfu sees; per subscription the
  viewer's REMB, the loss and round trip its receiver reports give.

``PYSFU_WAN_START_AT_CAP=0`` in the environment runs the default policy
without its start value (the behaviour before it, for comparisons).

``t`` is ``time.monotonic()`` (the same clock as the peers' reports: all
processes share the machine). Used by ``benchmarks/wan_chromium.py
--trace``; no test depends on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from pysfu.app import server as app_server
from pysfu.forwarding.congestion import RembPolicy, SlowestSubscriber


@dataclasses.dataclass(frozen=True)
class TracedPolicy:
    """The default policy, printing what it was asked and what it said."""

    inner: RembPolicy = dataclasses.field(default_factory=SlowestSubscriber)

    def combine(
        self, own_estimate: int | None, cap: int | None, subscribers: Sequence[int]
    ) -> int | None:
        out = self.inner.combine(own_estimate, cap, subscribers)
        source = None
        if out is not None:
            if cap is not None and out == cap:
                source = "cap"
            elif own_estimate is not None and out == own_estimate:
                source = "own"
            elif out in subscribers:
                source = "sub"
            else:
                source = "floor"
        record = {
            "remb": round(time.monotonic(), 3),
            "own": own_estimate,
            "cap": cap,
            "subs": list(subscribers),
            "out": out,
            "source": source,
        }
        print(json.dumps(record), flush=True)
        return out


def snapshot(sfu: Any) -> dict[str, Any]:
    tracks: list[dict[str, Any]] = []
    for room in sfu.stats().rooms:
        for member in room.members:
            for pub in member.published:
                if pub.kind == "video":
                    tracks.append(
                        {
                            "pub": member.role,
                            "remb": pub.remb_bitrate,
                            "own": pub.uplink_estimate,
                            "self_estimating": pub.publisher_estimates,
                            "received": pub.packets_received,
                            "bytes": pub.bytes_received,
                            "lost": pub.packets_lost,
                            "jitter": pub.jitter,
                            "nacks_sent": pub.nacks_sent,
                            "rtx": pub.retransmissions_received,
                        }
                    )
            for sub in member.subscribed:
                if sub.kind == "video":
                    tracks.append(
                        {
                            "sub": member.role,
                            "remb": sub.remb_bitrate,
                            "sent": sub.packets_sent,
                            "bytes": sub.bytes_sent,
                            "dropped": sub.packets_dropped,
                            "lost": sub.packets_lost,
                            "fraction_lost": sub.fraction_lost,
                            "rtt": sub.round_trip_time,
                            "nacks": sub.nacks_received,
                            "retransmitted": sub.retransmitted,
                        }
                    )
    return {"t": round(time.monotonic(), 3), "tracks": tracks}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    interval = 0.5
    rest = []
    for arg in argv:
        if arg.startswith("--trace-interval="):
            interval = float(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    args = app_server.parse_args(rest, "traced_serve")
    app_server.setup_logging(args.log_level)
    server = app_server.make_server(args)
    sfu = server.sfu
    sfu.config = dataclasses.replace(
        sfu.config,
        forwarding=dataclasses.replace(
            sfu.config.forwarding,
            remb_policy=TracedPolicy(
                SlowestSubscriber(start_at_cap=False)
                if os.environ.get("PYSFU_WAN_START_AT_CAP") == "0"
                else sfu.config.forwarding.remb_policy
            ),
        ),
    )
    app = server.application()

    async def sample(_: Any) -> Any:
        async def loop() -> None:
            while True:
                print(json.dumps(snapshot(sfu)), flush=True)
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app.cleanup_ctx.append(sample)
    app_server.serve(app, args, server.metrics_application())


if __name__ == "__main__":
    main()
