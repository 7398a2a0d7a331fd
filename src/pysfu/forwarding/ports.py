"""The interfaces the forwarding core is written against.

:mod:`.forwarder` and :mod:`.downtrack` import these Protocols, not each
other: a :class:`Source` is what a subscriber's copy of a track sees of the
track (a :class:`~pysfu.forwarding.Forwarder`), a :class:`Subscriber` what
the track sees of each copy (a :class:`~pysfu.forwarding.DownTrack`).
:class:`RtpSink` and :class:`RtcpOutput` are where they write, and
:class:`CallAt` is how they ask to be woken: time is passed in, and a timer
is a value (a deadline on the caller's clock), as in aioquic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .codecs import CodecInfo

if TYPE_CHECKING:
    from ..config import ForwardingConfig
    from .congestion import SubscriberEstimate
    from .simulcast import LayerSelector

__all__ = [
    "CallAt",
    "Cancellable",
    "Clock",
    "ErrorCounter",
    "RewritingSink",
    "RtcpOutput",
    "RtpSink",
    "SenderReport",
    "Source",
    "Subscriber",
]

#: A clock: seconds, monotonic (``time.monotonic`` at the edge).
Clock = Callable[[], float]


class Cancellable(Protocol):
    """A scheduled call that can be called off (an ``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


class CallAt(Protocol):
    """Runs ``callback`` once the clock it was given with reads ``when``."""

    def __call__(self, when: float, callback: Callable[[], None]) -> Cancellable: ...


class RtcpOutput(Protocol):
    """Where a forwarder sends feedback for its publisher (PLI, NACK, RR, REMB)."""

    def send_rtcp(self, data: bytes) -> bool: ...


class RtpSink(Protocol):
    """Where a downtrack writes: a subscriber's encrypted transport."""

    def send_rtp(self, data: bytes | bytearray) -> bool: ...

    def send_rtcp(self, data: bytes) -> bool: ...


class RewritingSink(RtpSink, Protocol):
    """A sink that rewrites the fixed header itself while encrypting
    (:meth:`pysfu._aiortc.RtpOutput.send_rewritten`): one copy per packet."""

    @property
    def max_rtp_size(self) -> int:
        """The longest RTP packet the sink can send (what the wire carries)."""
        ...

    def send_rewritten(
        self,
        data: bytes | bytearray,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
    ) -> bool: ...


@dataclass(frozen=True)
class SenderReport:
    """The publisher's latest RTP-to-NTP mapping (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    received_at: float  # the ``now`` it arrived at


class Source(Protocol):
    """What a subscriber's copy of a track uses of the track (a Forwarder)."""

    @property
    def track_id(self) -> str: ...

    @property
    def publisher_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def config(self) -> ForwardingConfig: ...

    @property
    def codecs(self) -> Mapping[int, CodecInfo]: ...

    @property
    def header_extensions(self) -> Mapping[str, int]: ...

    @property
    def rids(self) -> tuple[str, ...]: ...

    @property
    def abs_send_time_id(self) -> int: ...

    @property
    def simulcast(self) -> bool: ...

    @property
    def primary_codec(self) -> CodecInfo | None: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def call_at(self) -> CallAt: ...

    def remove_downtrack(self, downtrack: Subscriber) -> None: ...

    def first_forwarded(self, downtrack: Subscriber) -> None:
        """``downtrack`` sent its first packet (called once per downtrack)."""
        ...

    def request_keyframe(self) -> None: ...

    def request_layer_keyframe(self, index: int) -> None: ...

    def is_keyframe(self, data: bytes) -> bool: ...

    def warn_too_large(self, size: int, limit: int) -> None: ...

    def sender_report_for(self, ssrc: int | None) -> SenderReport | None: ...

    def history_packet(self, ssrc: int, sequence_number: int) -> bytes | None: ...

    def on_subscriber_estimate(self, now: float) -> None: ...

    def layer_bitrates(self, now_ms: int) -> list[int | None]: ...

    def layer_fps(self, now_ms: int) -> list[float | None]: ...


class ErrorCounter(Protocol):
    """The counter a forwarder bumps when sending to a subscriber raised."""

    errors: int


class Subscriber(Protocol):
    """What a track uses of each subscriber's copy of it (a DownTrack)."""

    @property
    def subscriber_id(self) -> str: ...

    @property
    def forwarder(self) -> Source: ...

    @property
    def stats(self) -> ErrorCounter: ...

    @property
    def waiting_keyframe(self) -> bool: ...

    @property
    def layers(self) -> LayerSelector: ...

    @property
    def estimate(self) -> SubscriberEstimate | None: ...

    def forward(
        self,
        data: bytes,
        sequence_number: int,
        timestamp: int,
        payload_type: int,
        source_ssrc: int,
        keyframe: bool,
        now: float,
        variants: dict[int, bytearray],
        elements: list[int] | None = None,
    ) -> None: ...

    def select_layer(
        self,
        layer_bitrates: Sequence[int | None],
        now: float,
        layer_fps: Sequence[float | None] = (),
    ) -> None: ...

    def layer_switched(self, rid: str | None) -> None: ...

    def source_closed(self) -> None:
        """The track closed: tell the owner, then close this copy."""
        ...
