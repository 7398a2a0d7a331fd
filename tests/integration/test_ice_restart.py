"""ICE restart between real aiortc peers: fresh credentials, same DTLS."""

from __future__ import annotations

import asyncio
from typing import Any

import aioice.ice
import aioice.stun
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from pysfu import SFU, IceConfig, SFUConfig
from pysfu import _aiortc as rtc
from pysfu.messages import RestartIce

from ..helpers import eventually
from ..peers import Peer, PeerFactory
from ..stun_probe import candidate_address, stun_check


@pytest.fixture(params=["own sockets", "shared port"])
async def restart_sfu(request: pytest.FixtureRequest) -> Any:
    shared = 0 if request.param == "shared port" else None
    server = SFU(
        SFUConfig(
            ice=IceConfig(
                host_addresses=("127.0.0.1",),
                lite=True,
                shared_port=shared,
                # frequent consent checks, a generous deadline: several are
                # answered soon after a restart, none is lost to a busy machine
                consent_interval=0.5,
                consent_failures=40,
            )
        )
    )
    yield server
    await server.close()
    await asyncio.sleep(0.1)


def video_frames(peer: Peer, publisher: Peer) -> int:
    track = peer.track_from(publisher.name, "video")
    return (
        0 if track is None else sum(1 for c, _ in track.patterns if c == publisher.code)
    )


async def test_ice_restart_keeps_dtls_and_media(
    restart_sfu: SFU, peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[int] = []
    start = RTCDtlsTransport.start

    async def counted_start(self: RTCDtlsTransport, parameters: Any) -> None:
        starts.append(id(self))  # each start is one DTLS handshake
        await start(self, parameters)

    monkeypatch.setattr(RTCDtlsTransport, "start", counted_start)
    room = restart_sfu.create_room("r1")
    host = await peers("host", code=3).join(room, "host")
    guest = await peers("guest", code=9).join(room)
    await guest.wait_video_from(host)
    await host.wait_video_from(guest)
    member = room.members[guest.name]
    negotiator = member.negotiator
    assert negotiator is not None
    await eventually(lambda: not negotiator.awaiting_answer)
    dtls = rtc.bundle_transport_of(member.pc)
    srtp = (dtls._tx_srtp, dtls._rx_srtp)
    server_dtls_starts = starts.count(id(dtls))
    assert server_dtls_starts == 1
    old_offer = member.pc.localDescription.sdp
    old_local = rtc.ice_credentials_in(old_offer)
    old_remote = rtc.remote_ice_credentials(member.pc)
    assert old_local is not None and old_remote is not None
    server_address = candidate_address(old_offer)
    answers = negotiator.answers_applied

    await guest.client.send(RestartIce())

    await eventually(lambda: negotiator.answers_applied > answers)
    consented = rtc.consent_answers(member.pc)
    assert guest.ice_restarts == 1
    assert member.ice_restarts_requested == 1
    new_local = rtc.ice_credentials_in(member.pc.localDescription.sdp)
    new_remote = rtc.remote_ice_credentials(member.pc)
    assert new_local is not None and new_remote is not None
    # fresh credentials on both sides, each side using the other's new ones
    assert new_local.username_fragment != old_local.username_fragment
    assert new_local.password != old_local.password
    assert new_remote.username_fragment != old_remote.username_fragment
    assert new_remote.password != old_remote.password
    assert new_remote == rtc.local_ice_credentials(guest.pc)
    assert rtc.remote_ice_credentials(guest.pc) == new_local
    # same DTLS transport and SRTP sessions, no second handshake
    assert rtc.bundle_transport_of(member.pc) is dtls
    assert (dtls._tx_srtp, dtls._rx_srtp) == srtp
    assert dtls.state == "connected"

    # media keeps flowing both ways after the restart
    before = (video_frames(guest, host), video_frames(host, guest))
    await guest.wait_video_from(host, frames=before[0] + 30)
    await host.wait_video_from(guest, frames=before[1] + 30)

    # a check with the old credentials is refused; one with the new is answered
    old = await stun_check(
        server_address,
        f"{old_local.username_fragment}:{old_remote.username_fragment}",
        old_local.password,
    )
    assert old is None or old.message_class == aioice.stun.Class.ERROR
    new = await stun_check(
        server_address,
        f"{new_local.username_fragment}:{new_remote.username_fragment}",
        new_local.password,
    )
    assert new is not None and new.message_class == aioice.stun.Class.RESPONSE

    # the server's consent checks are signed with the guest's new password:
    # the guest answers them
    await eventually(
        lambda: rtc.consent_answers(member.pc) >= consented + 3,
        what="consent checks answered after the restart",
    )
    assert starts.count(id(dtls)) == server_dtls_starts
    assert member.pc.connectionState == "connected"
    assert not guest.errors, guest.errors


async def switch_pair(peer: Peer, local_address: str) -> tuple[str, int]:
    """Make ``peer`` (full ICE, controlling) nominate a pair from its host
    candidate on ``local_address`` and send from it, as a client does whose
    network changed; returns the address it now uses."""
    conn = rtc.bundle_transport_of(peer.pc).transport._connection
    old = conn._nominated[1]
    protocol = next(
        p for p in conn._protocols if p.local_candidate.host == local_address
    )
    assert protocol is not old.protocol
    pair = aioice.ice.CandidatePair(protocol, old.remote_candidate)
    request = conn.build_request(pair, nominate=True)
    await protocol.request(
        request, pair.remote_addr, integrity_key=conn.remote_password.encode("utf8")
    )
    pair.nominated = True
    conn._nominated[1] = pair
    # the old path is gone: nothing sent there reaches the peer any more
    old.protocol.transport.close()
    host, port = protocol.transport.get_extra_info("sockname")[:2]
    return host, port


async def test_server_sends_to_the_pair_the_client_switched_to(
    restart_sfu: SFU, peers: PeerFactory
) -> None:
    room = restart_sfu.create_room("r1")
    host = await peers("host", code=3).join(room, "host")
    guest = await peers("guest", code=9, ice_addresses=("127.0.0.1", "127.0.0.2")).join(
        room
    )
    await guest.wait_video_from(host)
    member = room.members[guest.name]
    conn = rtc.bundle_transport_of(guest.pc).transport._connection
    used = conn._nominated[1].local_candidate.host
    other = "127.0.0.2" if used == "127.0.0.1" else "127.0.0.1"

    output = member.transport.output
    assert output is not None
    (forwarder,) = [
        f for f in room.members[host.name].publications.values() if f.kind == "video"
    ]
    requested = forwarder.keyframes.requested

    new_address = await switch_pair(guest, other)

    server_conn = rtc.bundle_transport_of(member.pc).transport._connection

    def server_sends_to() -> object:
        pair = server_conn._nominated.get(1)
        return None if pair is None else pair.remote_addr

    await eventually(
        lambda: server_sends_to() == new_address,
        what=f"the server on {new_address} (it sends to {server_sends_to()}, "
        f"the client used {used}; None: the connection closed)",
    )
    # what was sent meanwhile went to the old path: the server asks the
    # host for a keyframe itself (not every client does after a move)
    await eventually(
        lambda: output.path_changes == 1 and forwarder.keyframes.requested > requested,
        what=f"a keyframe asked for on the new path ({output.path_changes} changes)",
    )
    # the forwarded video reaches the guest on its new path only
    before = video_frames(guest, host)
    await guest.wait_video_from(host, frames=before + 30)
