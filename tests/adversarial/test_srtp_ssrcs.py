"""Issue 20.7: a publisher cannot make the server keep a libsrtp stream per
SSRC without limit.

libsrtp keeps a stream for every SSRC whose packet authenticates: 110,000
random SSRCs through one publisher's SRTP session grew the server by 20 MB.
Beyond a cap of distinct SSRCs per connection, packets of new SSRCs are
dropped (counted) before libsrtp sees them; the publisher's own media and
the room go on. (Without the cap the server also slows down with every
stream, and after about 20,000 of them stopped answering this client.)
"""

from __future__ import annotations

import gc

import pytest

from pysfu import SFU
from pysfu._aiortc.receive import MAX_INBOUND_SSRCS

from ..helpers import eventually
from ..peers import PeerFactory
from .seam_helpers import heap_in_use, send_random_ssrcs

pytestmark = pytest.mark.adversarial

SSRCS = 100_000
#: Growth allowed for this process's heap (server and clients) meanwhile;
#: libsrtp streams for 100,000 SSRCs take about 18 MB.
HEAP_BOUND = 8 * 1024 * 1024


async def test_random_ssrcs_do_not_grow_the_server(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    member = room.members["host"]

    before = heap_in_use()

    await send_random_ssrcs(host.pc, SSRCS)
    gc.collect()
    growth = heap_in_use() - before
    assert growth < HEAP_BOUND, f"the heap grew by {growth / 2**20:.1f} MiB"
    # packets of new SSRCs beyond the cap were dropped before libsrtp, counted
    assert member.malformed_packets >= SSRCS - MAX_INBOUND_SSRCS
    # the publisher's own media still reaches the room
    frames = len(track.patterns)
    await eventually(lambda: len(track.patterns) > frames + 30, what="media goes on")
    assert member.pc.connectionState == "connected"
