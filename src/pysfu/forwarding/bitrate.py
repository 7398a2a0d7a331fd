"""The old home of :class:`WindowedRate`, now :mod:`pysfu._aiortc.bitrate`
(the REMB estimator's counter): kept so that code importing from here works."""

from __future__ import annotations

from .._aiortc.bitrate import WindowedRate

__all__ = [
    "WindowedRate",
]
