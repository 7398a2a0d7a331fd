"""A 2-person call on an emulated WAN: publisher, server and viewer each in a
network namespace of their own, joined by :mod:`tests.wan.linkemu`.

The viewer's downlink is 500 kbit/s with 40 ms of delay. The aiortc viewer's
receiver estimates that (REMB); pysfu must pass it on to the publisher, whose
encoder then sends less than the link carries, and the viewer keeps decoding.
Before, pysfu told the publisher only its own (clean) uplink estimate and the
publisher sent ~1.5 Mbit/s into the 500 kbit/s link: the viewer got almost
nothing.
"""

from __future__ import annotations

import pytest

from .bed import Direction, Port, available
from .call import rate, two_person_call, wait_for

pytestmark = pytest.mark.skipif(
    not available(), reason="needs root and iproute2 for network namespaces"
)


def test_a_slow_viewer_slows_the_publisher_and_keeps_decoding() -> None:
    slow = Port("", down=Direction(rate_bps=500_000, delay_ms=40, queue_ms=300))
    with two_person_call(Port(""), slow) as (bed, published, viewed):
        wait_for(
            lambda: viewed.reports() and viewed.reports()[-1]["frames"] >= 30,
            timeout=120,
            what="the viewer's first pictures",
        )
        # then let the estimates settle for a while (no timing is asserted)
        start = viewed.reports()[-1]["t"]
        wait_for(
            lambda: viewed.reports()[-1]["t"] >= start + 40,
            timeout=300,
            what="40 s of call",
        )
        reports = published.reports()
        sent = rate(reports, "video_bytes_sent", 15) * 8
        decoded = rate(viewed.reports(), "frames", 15)
        for record in reports[::3]:
            print("publisher", record)
        print("bit/s", sent, "viewer frames/s", decoded, viewed.reports()[-1])
    print("links", bed.emulator_counters)
    assert sent < 500_000, f"the publisher sends {sent:.0f} bit/s into a 500k link"
    rembs = sorted(r["remb"] for r in reports[-15:])
    assert rembs[len(rembs) // 2] < 500_000  # the median (one may overshoot)
    assert decoded > 3, "the viewer's picture stopped"
