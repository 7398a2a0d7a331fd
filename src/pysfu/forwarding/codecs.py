"""What a negotiated codec is, and whether one can stand in for another."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _aiortc as rtc

__all__ = [
    "CodecInfo",
]


@dataclass(frozen=True)
class CodecInfo:
    """A codec as negotiated on one peer connection."""

    payload_type: int
    mime_type: str
    clock_rate: int
    channels: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Lower-case codec name, e.g. ``"vp8"``, ``"opus"``, ``"rtx"``."""
        return self.mime_type.split("/", 1)[1].lower()

    @property
    def rtx_for(self) -> int | None:
        """For an RTX codec, the payload type it retransmits (``apt``)."""
        if self.name != "rtx":
            return None
        apt = self.parameters.get("apt")
        return int(apt) if apt is not None else None

    def same_format(self, other: CodecInfo) -> bool:
        """Whether packets of ``self`` can be handed to a peer expecting ``other``."""
        if self.name != other.name or self.clock_rate != other.clock_rate:
            return False
        if self.name == "h264":
            mine, theirs = self.parameters, other.parameters
            return (
                str(mine.get("packetization-mode", "0"))
                == str(theirs.get("packetization-mode", "0"))
                and str(mine.get("profile-level-id", ""))[:2]
                == str(theirs.get("profile-level-id", ""))[:2]
            )
        profile = {"vp9": "profile-id", "av1": "profile"}.get(self.name)
        if profile is not None:  # e.g. VP9 profile 2 (10-bit) is no profile 0
            return str(self.parameters.get(profile, "0")) == str(
                other.parameters.get(profile, "0")
            )
        return True

    @classmethod
    def from_aiortc(cls, codec: rtc.RTCRtpCodecParameters) -> CodecInfo:
        return cls(
            payload_type=int(codec.payloadType or 0),
            mime_type=codec.mimeType,
            clock_rate=codec.clockRate,
            channels=codec.channels,
            parameters=dict(codec.parameters),
        )
