"""MediaFlowingEvent: once per participant and direction, when its media
starts to flow (real aiortc peers)."""

from __future__ import annotations

from pysfu import SFU, MediaFlowingEvent, RoomEvent

from ..helpers import eventually
from ..peers import PeerFactory


async def test_each_participant_is_told_once_when_its_media_flows(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r", max_participants=2)
    events: list[RoomEvent] = []
    sfu.add_listener(events.append)  # the SFU-wide listener sees them too

    def flowing() -> list[MediaFlowingEvent]:
        return [e for e in events if isinstance(e, MediaFlowingEvent)]

    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    # a viewer that publishes nothing only ever receives
    viewer = peers("viewer", code=3, publish_video=False, publish_audio=False)
    await viewer.join(room)
    await guest.wait_video_from(host)
    await host.wait_video_from(guest)
    await viewer.wait_video_from(host)
    await viewer.wait_video_from(guest)
    await eventually(
        lambda: (
            {(e.participant_id, e.direction) for e in flowing()}
            >= {
                ("host", "publishing"),
                ("guest", "publishing"),
                ("host", "receiving"),
                ("guest", "receiving"),
                ("viewer", "receiving"),
            }
        ),
        what="every participant's media flowing",
    )
    # media kept flowing meanwhile: still one event per participant and way
    told = [(e.participant_id, e.direction) for e in flowing()]
    assert len(told) == len(set(told)) == 5, told
    for event in flowing():
        assert event.room_id == "r"
        assert event.kind in ("audio", "video")
        publisher = event.track_id.split("/")[0]
        if event.direction == "publishing":
            assert publisher == event.participant_id
        else:
            assert publisher != event.participant_id
            assert event.participant_id in ("host", "guest", "viewer")
