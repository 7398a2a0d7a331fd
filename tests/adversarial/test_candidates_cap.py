"""Issue 21.2: trickled candidates cannot make ICE cost O(n) per message.

aioice pairs and re-sorts its whole check list for each remote candidate,
also after ICE completed: 20,000 trickled candidates cost 26 ms of CPU each.
A connection takes at most MAX_REMOTE_CANDIDATES (the excess is refused with
``too_many_candidates``), and candidates arriving after ICE completed are
ignored.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import pytest

from pysfu import SFU, SFUConfig
from pysfu._aiortc import MAX_REMOTE_CANDIDATES
from pysfu.config import LimitsConfig
from pysfu.signalling import Answer, Candidate, Error, MemorySignalling, Offer
from pysfu.signalling.memory import MemoryClient
from pysfu.signalling.messages import ClientMessage

from ..conftest import LOOPBACK
from ..helpers import eventually
from ..peers import PeerFactory

pytestmark = pytest.mark.adversarial

#: Candidates sent: past the cap, and enough to be felt without it.
SENT = 400


@pytest.fixture
async def generous_sfu() -> AsyncIterator[SFU]:
    """Signalling rate limits out of the way: the cap itself is under test."""
    limits = LimitsConfig(messages_per_second=100_000, message_burst=100_000)
    server = SFU(SFUConfig(ice=LOOPBACK, limits=limits))
    yield server
    await server.close()
    await asyncio.sleep(0.1)
    gc.collect()


def candidate(n: int) -> Candidate:
    """A distinct, well-formed host candidate (an address nobody answers on)."""
    port = 10_000 + n
    return Candidate(
        candidate=f"candidate:{n} 1 udp 2130706431 127.0.0.2 {port} typ host",
        sdp_mline_index=0,
    )


def trickle_like_a_browser(client: MemoryClient) -> None:
    """Answer without ``a=end-of-candidates`` (aiortc gathers before it
    answers and says so; browsers trickle and keep candidates coming)."""
    send = client.send

    async def send_without_end(message: ClientMessage) -> None:
        if isinstance(message, Answer):
            message = Answer(sdp=message.sdp.replace("a=end-of-candidates\r\n", ""))
        await send(message)

    client.send = send_without_end  # type: ignore[method-assign]


def remote_candidates(room_member: object) -> int:
    transport = room_member.pc.getTransceivers()[0].receiver.transport  # type: ignore[attr-defined]
    return len(transport.transport.getRemoteCandidates())


async def test_candidates_beyond_the_cap_are_refused(
    generous_sfu: SFU, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pysfu")
    room = generous_sfu.create_room("r1")
    client = await MemorySignalling().join(room, "trickler", "host")
    await client.receive_type(Offer, 10)
    for n in range(SENT):
        await client.send(candidate(n))
    errors = [client.inbox.get_nowait() for _ in range(client.inbox.qsize())]
    codes = [e.code for e in errors if isinstance(e, Error)]
    assert codes == ["too_many_candidates"] * (SENT - MAX_REMOTE_CANDIDATES)
    member = room.members["trickler"]
    assert remote_candidates(member) == MAX_REMOTE_CANDIDATES
    assert not member.closed  # refused, not thrown out
    # counted, and logged once however many
    assert member.signalling_errors == SENT - MAX_REMOTE_CANDIDATES
    by_code = member.stats().signalling_errors_by_code
    assert by_code == {"too_many_candidates": SENT - MAX_REMOTE_CANDIDATES}
    assert generous_sfu.totals().signalling_errors_by_code == by_code
    logged = [r for r in caplog.records if "too_many_candidates" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "trickler" in logged[0].getMessage()


async def test_candidates_after_ice_completed_are_ignored(
    generous_sfu: SFU, peers: PeerFactory
) -> None:
    room = generous_sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    trickle_like_a_browser(guest.client)
    track = await guest.wait_video_from(host)
    member = room.members["guest"]
    held = remote_candidates(member)
    for n in range(SENT):
        await guest.client.send(candidate(n))
    assert remote_candidates(member) == held
    assert not any(isinstance(m, Error) for m in guest.messages)
    frames = len(track.patterns)
    await eventually(lambda: len(track.patterns) > frames + 30, what="media goes on")
