"""Data channels: messages between the participants of a room, relayed by the SFU.

Every participant's peer connection carries one data channel, labelled
``pysfu``, that the server creates in its first offer (SCTP over the same
DTLS transport as the media, so no extra ICE or DTLS). A client writes its
message as is; the server stamps it with the sender's id and name (a client
cannot forge them), runs the room's ``data_filter`` and sends it to the
members the room's eligibility policy lets receive from the sender, as for
media. The sender does not get its own message back.

What a client receives (see docs/reference/datachannel.md):

- a **text** message is a JSON object
  ``{"from": sender id, "name": sender name, "data": the text}``;
- a **binary** message is a header and the payload: two bytes (big-endian)
  giving the header's length ``n``, then ``n`` bytes of UTF-8 JSON
  ``{"from": ..., "name": ...}``, then the sender's bytes unchanged.

Messages from the server itself (:meth:`pysfu.Room.send_data`) have
``"from": null`` and ``"name": null``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import _aiortc as rtc
from .config import LimitsConfig, SFUConfig
from .events import DataDroppedEvent
from .messages import Error
from .ports import M, Member, RoomPort
from .ratelimit import TokenBucket
from .stats import DataChannelStats

__all__ = [
    "CHANNEL_LABEL",
    "DataChannel",
    "DataChannelOwner",
    "DataCounters",
    "DataFilter",
    "envelope",
    "message_size",
    "open_envelope",
]

logger = logging.getLogger(__name__)

#: The label of the channel the server creates on every connection.
CHANNEL_LABEL = "pysfu"

#: Decides what becomes of a message: return it (or a replacement) to relay
#: it, ``None`` to drop it. Called with the sender (a
#: :class:`~pysfu.Participant`) and the message data.
DataFilter = Callable[[M, str | bytes], str | bytes | None]


class DataChannelOwner(Member, Protocol):
    """What a :class:`DataChannel` needs of its participant."""

    @property
    def config(self) -> SFUConfig: ...
    @property
    def room(self) -> RoomPort[Any]: ...


_ERRORS = {
    "too_large": ("data_too_large", "the data channel message is too large"),
    "rate_limited": ("data_rate_limited", "too many data channel messages"),
}


def envelope(sender_id: str | None, name: str | None, data: str | bytes) -> str | bytes:
    """The message a recipient gets for ``data`` from ``sender_id``."""
    if isinstance(data, str):
        return json.dumps({"from": sender_id, "name": name, "data": data})
    header = json.dumps({"from": sender_id, "name": name}).encode()
    return len(header).to_bytes(2, "big") + header + data


def open_envelope(message: str | bytes) -> tuple[str | None, str | None, str | bytes]:
    """``(sender id, sender name, data)`` of a received message (for clients
    written in Python, and tests). Raises ``ValueError`` if malformed."""
    if isinstance(message, str):
        obj = json.loads(message)
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), str):
            raise ValueError("not a pysfu text envelope")
        return obj.get("from"), obj.get("name"), obj["data"]
    if len(message) < 2:
        raise ValueError("not a pysfu binary envelope")
    length = int.from_bytes(message[:2], "big")
    header = json.loads(message[2 : 2 + length])
    if not isinstance(header, dict):
        raise ValueError("not a pysfu binary envelope")
    return header.get("from"), header.get("name"), bytes(message[2 + length :])


def message_size(data: str | bytes) -> int:
    """Size in bytes on the wire (UTF-8 for text)."""
    return (
        len(data.encode("utf-8", "surrogatepass"))
        if isinstance(data, str)
        else len(data)
    )


@dataclass
class DataCounters:
    """Live counters of one participant's data channel."""

    messages_received: int = 0
    bytes_received: int = 0
    messages_dropped: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    send_dropped: int = 0
    sctp_aborts: int = 0

    def snapshot(self) -> DataChannelStats:
        return DataChannelStats(
            messages_received=self.messages_received,
            bytes_received=self.bytes_received,
            messages_dropped=self.messages_dropped,
            messages_sent=self.messages_sent,
            bytes_sent=self.bytes_sent,
            send_dropped=self.send_dropped,
            sctp_aborts=self.sctp_aborts,
        )


class DataChannel:
    """The server's end of one participant's data channel.

    Checks each incoming message against the limits
    (:class:`~pysfu.config.LimitsConfig`: size, then rate), hands accepted
    ones to the room, and delivers the room's messages to the client.
    Created by :class:`~pysfu.Participant` when it starts.
    """

    def __init__(self, participant: DataChannelOwner, channel: Any) -> None:
        self._participant = participant
        self._channel = channel
        limits: LimitsConfig = participant.config.limits
        self._max_size = limits.max_data_message_size
        self._buffer_limit = limits.data_buffer_limit
        self._rate = TokenBucket(
            limits.data_messages_per_second, limits.data_message_burst
        )
        self.counters = DataCounters()
        self._warned: dict[str, float] = {}  # error code -> when last sent
        self._tasks: set[asyncio.Task[None]] = set()
        channel.on("message", self._on_message)
        # aiortc would reassemble a message of any size before _on_message
        rtc.limit_sctp_reception(channel.transport, self._on_sctp_violation)

    @property
    def open(self) -> bool:
        return bool(self._channel.readyState == "open")

    def _on_message(self, data: str | bytes) -> None:
        try:
            self._receive(data)
        except Exception:
            # raised into aiortc, it would end this connection's SCTP reception
            logger.exception("relaying a message of %s failed", self._participant)

    def _receive(self, data: str | bytes) -> None:
        participant = self._participant
        if participant.closed:
            return
        size = message_size(data)
        counters = self.counters
        counters.messages_received += 1
        counters.bytes_received += size
        if size > self._max_size:
            self._drop("too_large", size)
        elif not self._rate.allow():
            self._drop("rate_limited", size)
        else:
            participant.room.relay_data(participant, data)

    def _on_sctp_violation(self, problem: str) -> None:
        """The client broke the SCTP limits the server advertised: its data
        channel is closed (the association aborted); media carries on."""
        logger.warning("%s sent %s: data channel closed", self._participant, problem)
        self.counters.sctp_aborts += 1
        self._drop("too_large", 0)

    def _drop(self, reason: str, size: int) -> None:
        """Count a message of this participant that is not relayed."""
        participant = self._participant
        self.counters.messages_dropped += 1
        participant.room.emit(
            DataDroppedEvent(participant.room.id, participant.id, reason, size)
        )
        error = _ERRORS.get(reason)
        now = time.monotonic()
        if error is not None and now - self._warned.get(reason, float("-inf")) >= 1.0:
            self._warned[reason] = now  # once per second and kind at most
            task = asyncio.get_running_loop().create_task(
                participant.send(Error(code=error[0], message=error[1]))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def deliver(self, message: str | bytes) -> bool:
        """Send an enveloped message to the client; False if it was dropped
        (channel not open yet or any more, or too much already queued)."""
        channel = self._channel
        if channel.readyState != "open" or channel.bufferedAmount > self._buffer_limit:
            self.counters.send_dropped += 1
            return False
        try:
            channel.send(message)
        except Exception:  # closing underneath us, or over the peer's size limit
            logger.debug(
                "data channel send to %s failed", self._participant, exc_info=True
            )
            self.counters.send_dropped += 1
            return False
        self.counters.messages_sent += 1
        self.counters.bytes_sent += message_size(message)
        return True

    def close(self) -> None:
        channel = self._channel
        channel.remove_all_listeners()
        if channel.readyState not in ("closing", "closed"):
            channel.close()
        for task in self._tasks:
            task.cancel()
