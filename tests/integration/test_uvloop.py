"""pysfu on uvloop: the event loop many deployments run instead of asyncio's.

The aiortc seam reaches into asyncio's datagram transport for its fastest
send and receive paths and falls back to the public transport API on other
loops; this runs the same real peers as tests/integration/test_media.py on uvloop.
"""

from __future__ import annotations

import asyncio

import pytest

from pysfu import SFU, SFUConfig

from ..conftest import LOOPBACK
from ..peers import Peer

uvloop = pytest.importorskip("uvloop")


async def _host_and_guest_exchange_media() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    sfu = SFU(SFUConfig(ice=LOOPBACK))
    made: list[Peer] = []
    try:
        room = sfu.create_room("r1")
        host = Peer("host", 3, tone=440)
        guest = Peer("guest", 9, tone=1000)
        made += [host, guest]
        await host.join(room, "host")
        await guest.join(room)
        assert (await guest.wait_video_from(host, frames=30)).codes() == {3}
        assert (await host.wait_video_from(guest, frames=30)).codes() == {9}
        assert abs((await guest.wait_audio_from(host)).frequency() - 440) < 20
        assert abs((await host.wait_audio_from(guest)).frequency() - 1000) < 20
        # what went through pysfu's own send path, not aiortc's
        forwarder = room.members["host"].publications["host/video"]
        assert forwarder.downtracks[0].stats.packets_sent > 30
        assert forwarder.downtracks[0].stats.errors == 0
    finally:
        for peer in made:
            await peer.close()
        await sfu.close()


def test_host_and_guest_see_and_hear_each_other_on_uvloop() -> None:
    uvloop.run(_host_and_guest_exchange_media())
