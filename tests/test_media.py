"""Media forwarded between real aiortc peers through the SFU, over loopback."""

from __future__ import annotations

import pytest

from pysfu import SFU

from .peers import Peer


async def test_host_and_participant_see_and_hear_each_other(sfu: SFU) -> None:
    room = sfu.create_room("r1")
    host = await Peer("host", code=3, tone=440).join(room, "host")
    guest = await Peer("guest", code=9, tone=1000).join(room)
    try:
        video = await guest.wait_video_from(host)
        assert video.codes() == {3}
        video = await host.wait_video_from(guest)
        assert video.codes() == {9}
        audio = await guest.wait_audio_from(host)
        assert audio.peak() > 1000
        assert abs(audio.frequency() - 440) < 20
        audio = await host.wait_audio_from(guest)
        assert abs(audio.frequency() - 1000) < 20
    finally:
        await host.close()
        await guest.close()
