"""Simulcast on the WAN bed: a Chromium publisher sends three layers through
``pysfu serve --simulcast``; one Chromium viewer sits behind a 400 kbit/s
link, another on a clean one.

The slow viewer's Chromium estimates its link (REMB); pysfu moves it to the
lowest layer (a quarter of the camera's height), where it goes on decoding,
while the viewer on the clean link gets a larger one. Everything asserted is
what the viewers' ``getStats()`` show; the waits are liveness bounds only.
The server chooses by bitrate only here (``--simulcast-min-fps=0``): on this
camera Chromium encodes h and f at 2-6 fps and q at 10-29, and the frame-rate
rule (tests/unit/test_simulcast.py, benchmarks/wan_chromium.py) would give
the fast viewer q too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..helpers import LIVENESS, eventually
from .bed import Direction, Port, available
from .call import Lines
from .chromium import chromium_call, frames, height

pytestmark = pytest.mark.skipif(
    not available(), reason="needs root and iproute2 for network namespaces"
)


def layer_heights(publisher: Lines) -> dict[str, int]:
    """rid -> the height Chromium encodes that layer at now."""
    reports = [r for r in publisher.reports() if r["outbound"]]
    if not reports:
        return {}
    return {o["rid"]: o["height"] for o in reports[-1]["outbound"] if o["rid"]}


def state(publisher: Lines, viewers: dict[str, Lines]) -> dict[str, Any]:
    return {
        "layers": layer_heights(publisher),
        **{name: lines.reports()[-1:] for name, lines in viewers.items()},
    }


@pytest.mark.xfail(
    reason="unreliable, not failing for a known defect: Chromium encodes its "
    "layers at 1.5-7 fps on this detailed camera (fixed layer targets of "
    "75/250/920 kbit/s), so a probe or a freeze can stall the slow viewer's "
    "count; 3 of 4 runs passed after the simulcast fixes (0 of 3 before)",
    strict=False,
)
async def test_a_slow_viewer_decodes_the_low_layer_a_fast_one_a_higher() -> None:
    slow_link = Port("", down=Direction(rate_bps=400_000, delay_ms=40, queue_ms=300))
    links = {"publisher": Port(""), "fast": Port(""), "slow": slow_link}
    with chromium_call(
        links, simulcast=True, server_args=["--simulcast-min-fps=0"]
    ) as (_, published, viewers):
        fast, slow = viewers["fast"], viewers["slow"]

        def what() -> str:
            return str(state(published, viewers))

        await eventually(
            lambda: frames(fast) > 0 and frames(slow) > 0,
            2 * LIVENESS,
            "both viewers' first pictures",
        )
        await eventually(
            lambda: set(layer_heights(published)) == {"q", "h", "f"},
            LIVENESS,
            f"Chromium sending the rids q, h, f {what()}",
        )

        def low() -> int:
            return layer_heights(published).get("q", 0)

        await eventually(
            lambda: 0 < height(slow) == low() < height(fast),
            3 * LIVENESS,
            f"the slow viewer on the lowest layer, the fast one higher {what()}",
        )
        # and the slow viewer keeps decoding there
        for _ in range(3):
            decoded = frames(slow)
            await eventually(
                lambda: frames(slow) > decoded + 30,  # noqa: B023
                LIVENESS,
                f"the slow viewer decoding {what()}",
            )
            # two stats read apart: Chromium may rescale a layer in between
            await eventually(
                lambda: height(slow) == low(), LIVENESS, f"still the lowest {what()}"
            )
            await asyncio.sleep(1)
        await eventually(
            lambda: height(fast) > low(), LIVENESS, f"the fast one higher {what()}"
        )
