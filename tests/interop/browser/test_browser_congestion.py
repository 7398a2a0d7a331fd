"""Chromium, at its defaults, estimates its own uplink through pysfu.

Chromium offers transport-wide congestion control; pysfu accepts it, and
reports when each of the browser's packets arrived (transport-wide feedback,
:mod:`pysfu.rtp.twcc`). The browser's own controller (delay, loss, probes)
then sets its send rate, as in a direct call. What a user would notice if
the feedback were wrong: Chromium would take the packets for lost or
delayed and hold its video at its 300 kbit/s start or below.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .harness import Browser, User, wait_for
from .test_browser_room import ROOMS_IN, assert_receives, connected_pair

FEEDBACK_SENT = "pysfu_transport_feedback_sent_total"


async def available_outgoing_bitrate(user: User) -> float:
    """What the browser's congestion controller lets it send (bit/s), from
    its selected candidate pair's ``availableOutgoingBitrate``."""
    value: float = await user.page.evaluate(
        """async () => {
          const report = await window.pysfu.pc.getStats();
          let pair = null;
          report.forEach((s) => {
            if (s.type === "transport" && s.selectedCandidatePairId)
              pair = report.get(s.selectedCandidatePairId);
          });
          return (pair && pair.availableOutgoingBitrate) || 0;
        }"""
    )
    return value


@ROOMS_IN
async def test_chromium_estimates_its_uplink_from_the_servers_feedback(
    start_server: Any, browser: Browser, rooms_option: tuple[str, ...]
) -> None:
    server = start_server(*rooms_option)
    host, guest = await connected_pair(browser, server)
    await assert_receives(guest, host)
    await assert_receives(host, guest)

    sent = await wait_for(
        lambda: asyncio.to_thread(server.metric, FEEDBACK_SENT),
        "transport-wide feedback sent to the browsers",
    )
    assert sent > 0
    # fed by it, the browser's controller finds what loopback carries (well
    # above its 300 kbit/s start; the REMB cap is 2.5 Mbit/s)
    for user in (host, guest):

        async def ramped(user: User = user) -> bool:
            return await available_outgoing_bitrate(user) >= 1_000_000

        await wait_for(ramped, f"{user.name}'s browser to ramp up its send rate")


async def test_without_transport_cc_no_feedback_is_sent(
    start_server: Any, browser: Browser
) -> None:
    server = start_server("--no-transport-cc")
    host, guest = await connected_pair(browser, server)
    await assert_receives(guest, host)
    assert await asyncio.to_thread(server.metric, FEEDBACK_SENT) == 0
