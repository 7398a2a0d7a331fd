"""Server-driven SDP negotiation: moved to :mod:`pysfu.peer.offering`.

Kept so that code importing ``pysfu.negotiation`` keeps working. The
``offers_without_candidates`` counter can be read here, but it lives in (and
is reset through) :mod:`pysfu.peer.offering`.
"""

from __future__ import annotations

from typing import Any

from .peer import offering
from .peer.offering import Negotiator

# ``offers_without_candidates`` is still readable here (see __getattr__)
__all__ = ["Negotiator"]


def __getattr__(name: str) -> Any:
    # the counter lives in (and is updated by) pysfu.peer.offering
    if name == "offers_without_candidates":
        return offering.offers_without_candidates
    raise AttributeError(name)
