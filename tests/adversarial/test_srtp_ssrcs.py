"""Issue 20.7: a publisher cannot make the server keep a libsrtp stream per
SSRC without limit.

libsrtp keeps a stream for every SSRC whose packet authenticates: 110,000
random SSRCs through one publisher's SRTP session grew the server by 20 MB.
Beyond a cap of distinct SSRCs per connection, packets of new SSRCs are
dropped (counted) before libsrtp sees them; the publisher's own media and
the room go on.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from pysfu import SFU

from ..helpers import eventually
from ..peers import PeerFactory
from .seam_helpers import rss_bytes, send_random_ssrcs

pytestmark = pytest.mark.adversarial

SSRCS = 100_000
#: Growth allowed for this process (server and clients) meanwhile; libsrtp
#: streams for 100,000 SSRCs take about 18 MB.
RSS_BOUND = 12 * 1024 * 1024


async def test_random_ssrcs_do_not_grow_the_server(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    member = room.members["host"]

    before = rss_bytes()
    await send_random_ssrcs(host.pc, SSRCS)
    await asyncio.sleep(1)  # what is still in the socket buffer gets read
    gc.collect()
    growth = rss_bytes() - before
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
    # the attack reached the server: packets of new SSRCs dropped and counted
    assert member.malformed_packets > SSRCS // 2
    # the publisher's own media still reaches the room
    frames = len(track.patterns)
    await eventually(lambda: len(track.patterns) > frames + 30, what="media goes on")
    assert member.pc.connectionState == "connected"
