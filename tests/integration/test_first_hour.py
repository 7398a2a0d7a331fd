"""What a new user meets first: settings checked when made, a loud warning
when no peer can ever connect, ICE sockets inside a configured port range."""

from __future__ import annotations

import logging
import socket

import pytest

from pysfu import (
    SFU,
    IceConfig,
    IceServer,
    LimitsConfig,
    RoomExists,
    SFUConfig,
    TooManyRooms,
)
from pysfu.peer import offering

from ..helpers import eventually, ice_sockets
from ..peers import PeerFactory


@pytest.mark.parametrize(
    ("settings", "error", "words"),
    [
        ({"host_addresses": ("not-an-ip",)}, ValueError, "'not-an-ip' is not an IP"),
        ({"host_addresses": "127.0.0.1"}, TypeError, "must be a tuple"),
        ({"host_addresses": ["127.0.0.1"]}, TypeError, "must be a tuple"),
        ({"host_addresses": ()}, ValueError, "is empty"),
        ({"host_addresses": (1,)}, TypeError, "is not a string"),
        ({"announced_address": "example.org"}, ValueError, "not an IP address"),
        ({"servers": (IceServer("stun:x"), "stun:y")}, TypeError, "IceServer"),
        ({"port_range": (50000, 40000)}, ValueError, "low <= high"),
        ({"port_range": (0, 10)}, ValueError, "1 <= low"),
        ({"port_range": "40000-50000"}, TypeError, "(low, high) tuple"),
        ({"port_range": (1.5, 10)}, TypeError, "tuple of ints"),
        ({"consent_interval": 0}, ValueError, "consent_interval"),
    ],
)
def test_bad_ice_settings_are_refused_when_made(
    settings: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        IceConfig(**settings)  # type: ignore[arg-type]
    assert words in str(raised.value)


def test_good_ice_settings_are_accepted() -> None:
    config = IceConfig(
        host_addresses=("127.0.0.1", "::1"),
        announced_address="203.0.113.7",
        port_range=(40000, 40000),
    )
    assert config.port_range == (40000, 40000)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_server_ice_sockets_bind_inside_the_port_range(
    peers: PeerFactory,
) -> None:
    low = free_udp_port()
    # a range of a few ports; the three connections need one each
    port_range = (low, low + 20)
    sfu = SFU(
        SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",), port_range=port_range))
    )
    try:
        room = sfu.create_room("r", max_participants=2)
        host = await peers("host", code=3).join(room, "host")
        guest = await peers("guest", code=9).join(room)
        third = await peers("third", code=5).join(room)
        assert (await guest.wait_video_from(host)).codes() == {3}
        assert (await host.wait_video_from(guest)).codes() == {9}
        assert (await third.wait_video_from(guest)).codes() == {9}
        ports = [
            p.transport.get_extra_info("sockname")[1]
            for participant in room.members.values()
            for p in ice_sockets(participant.pc)
        ]
        assert len(ports) == 3
        assert all(low <= port <= low + 20 for port in ports), ports
        assert len(set(ports)) == 3
    finally:
        await sfu.close()


async def test_a_full_port_range_and_an_offer_without_candidates_are_loud(
    peers: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    offering.offers_without_candidates = 0
    sfu = SFU(
        SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",), port_range=(port, port)))
    )
    caplog.set_level(logging.WARNING)
    try:
        room = sfu.create_room("r")
        await peers("host", code=3).join(room, "host")
        await peers("guest", code=9).join(room)
        await eventually(
            lambda: offering.offers_without_candidates >= 2,
            what="offers without candidates counted",
        )
        warnings = [r.getMessage() for r in caplog.records]
        full = [w for w in warnings if f"port range {port}-{port} is taken" in w]
        assert full and "--ice-ports" in full[0]
        empty = [w for w in warnings if "without any ICE candidate" in w]
        assert len(empty) == 1  # logged once, counted every time
    finally:
        await sfu.close()
        taken.close()


async def test_departures_and_their_reasons_are_logged(
    peers: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that vanished (consent expired) closes the room: the log says
    why at INFO, each step with its reason."""
    sfu = SFU(
        SFUConfig(
            ice=IceConfig(
                host_addresses=("127.0.0.1",),
                consent_interval=0.2,
                consent_failures=3,
            )
        )
    )
    caplog.set_level(logging.INFO)
    try:
        room = sfu.create_room("r", max_participants=2)
        host = await peers("host", code=3).join(room, "host")
        guest = await peers("guest", code=9).join(room)
        await guest.wait_video_from(host)
        await room.members["guest"].leave()
        await eventually(lambda: len(room.members) == 1, what="guest gone")
        for protocol in ice_sockets(host.pc):  # vanish: no goodbye, no answers
            protocol.transport.close()
        await eventually(lambda: room.closed, what="room closed")
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert "room r: participant guest left: left" in infos
        assert any(
            m.startswith("ICE consent expired: the peer at 127.0.0.1:") for m in infos
        )
        assert "room r: host host left: connection closed" in infos
        assert "room r closed: host left" in infos
    finally:
        await sfu.close()


async def test_an_existing_room_id_at_the_room_limit_is_room_exists() -> None:
    sfu = SFU(SFUConfig(limits=LimitsConfig(max_rooms=1)))
    try:
        sfu.create_room("taken")
        with pytest.raises(RoomExists):
            sfu.create_room("taken")
        with pytest.raises(TooManyRooms):
            sfu.create_room("another")
    finally:
        await sfu.close()
