"""Issue 20.3: what an outsider sends to a server ICE port is bounded.

Datagrams that are neither STUN, DTLS nor RTP, sent to the port of a
participant whose ICE has not completed, went to aioice's unbounded receive
queue (60 KB datagrams: 1 GB in 22 s, kept after the participant left). Now
they are dropped and counted; the server's memory stays flat.
"""

from __future__ import annotations

import asyncio
import weakref

import pytest

from pysfu import SFU
from pysfu.signalling import Leave, MemorySignalling, Offer

from ..helpers import eventually
from ..integration.test_lifecycle import assert_freed
from ..peers import PeerFactory
from .seam_helpers import blast, host_candidate_port, rss_bytes

pytestmark = pytest.mark.adversarial

JUNK = b"x" * 60_000  # neither STUN, DTLS nor RTP (RFC 7983)
DTLS_LIKE = bytes([22]) + b"\xfe\xfd" + b"j" * 1_000  # looks like DTLS, is not
SENT = 3_500  # about 200 MB
#: Growth allowed for the server (this process) while 200 MB arrive.
RSS_BOUND = 50 * 1024 * 1024


async def test_junk_at_a_pending_port_is_dropped_not_kept(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r1", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    # a participant who got its offer and never answers: ICE stays pending
    pending = await MemorySignalling().join(room, "pending", "participant")
    offer = await pending.receive_type(Offer, 10)
    port = host_candidate_port(offer.sdp)
    member = room.members["pending"]

    before = rss_bytes()
    frames_before = len(track.patterns)
    await asyncio.to_thread(blast, ("127.0.0.1", port), [JUNK] * 9 + [DTLS_LIKE], SENT)
    growth = rss_bytes() - before
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"
    # every datagram reached the server (each batch was acknowledged) and
    # was counted as dropped
    assert member.malformed_packets >= SENT - 64
    # the room went on meanwhile
    await eventually(
        lambda: len(track.patterns) > frames_before + 30, what="media goes on"
    )

    conn = member.pc.getTransceivers()[0].receiver.transport.transport._connection
    await member.leave("test")
    assert conn._queue.qsize() <= 1  # at most aioice's end mark


async def test_a_participant_whose_port_got_junk_is_freed_after_it_leaves(
    sfu: SFU, peers: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The drop's warning once carried the aioice connection as an argument:
    a handler that keeps records (here pytest's, as a MemoryHandler would)
    then kept the connection, its tap and the whole peer connection and
    participant of someone who had left. (It showed as intermittent leaks
    in the lifecycle and soak tests: a media packet in flight reaching a
    connection being closed is dropped, and logged, the same way.)"""
    room = sfu.create_room("r1")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    await host.wait_video_from(guest)
    assert guest.pc.remoteDescription is not None
    port = host_candidate_port(guest.pc.remoteDescription.sdp)
    await asyncio.to_thread(blast, ("127.0.0.1", port), [b"x" * 100], 1)
    member = room.members["guest"]
    assert member.malformed_packets == 1
    assert "dropping datagrams (not_dtls_or_rtp)" in caplog.text
    participant_ref, pc_ref = weakref.ref(member), weakref.ref(member.pc)
    del member

    assert guest.client is not None
    await guest.client.send(Leave())
    await guest.close()
    await eventually(lambda: "guest" not in room.members, what="the guest left")

    assert caplog.records  # still held, with what they refer to
    await assert_freed(participant_ref, pc_ref)
