"""The code of docs/how-to/eligibility.md."""

from __future__ import annotations

from pysfu import SFU, EligibilityPolicy, Participant, Role, Room, host_only


# --8<-- [start:stage]
def stage(sfu: SFU, room_id: str, audience: int = 100) -> Room:
    """A stage: everyone receives the host; nobody receives the audience."""
    return sfu.create_room(room_id, max_participants=audience, eligibility=host_only)
    # --8<-- [end:stage]


# --8<-- [start:groups]
def breakout(groups: dict[str, str]) -> EligibilityPolicy:
    """Everyone receives the host, the host receives everyone, and participants
    receive the others of their own group.

    ``groups`` maps participant ids to group names. The policy is asked when a
    track is published and when someone joins, so put a participant in its
    group before it joins.
    """

    def eligible(publisher: Participant, subscriber: Participant) -> bool:
        if publisher is subscriber:
            return False
        if Role.HOST in (publisher.role, subscriber.role):
            return True
        group = groups.get(publisher.id)
        return group is not None and group == groups.get(subscriber.id)

    return eligible
    # --8<-- [end:groups]


# --8<-- [start:reapply]
def reapply(room: Room) -> None:
    """Make every subscription of ``room`` match its current policy.

    A policy is asked only when a track is published and when someone joins;
    call this after changing ``room.eligibility`` or the data it reads.
    """
    for subscriber in room.members.values():
        for publisher in room.members.values():
            for forwarder in publisher.publications.values():
                if room.eligibility(publisher, subscriber):
                    subscriber.subscribe(forwarder)  # no-op if subscribed
                else:
                    subscriber.unsubscribe(forwarder.track_id)  # no-op if not
    # --8<-- [end:reapply]
