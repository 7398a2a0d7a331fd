"""Pure RTP bytes: header parsing and rewriting, the RFC 8285 header
extension walker, keyframe detection per codec, and the receive-side
bandwidth estimate (REMB) from abs-send-time.

No aiortc, no asyncio, no clock: everything here takes bytes (and, where a
time is written, a ``now``) and returns values, so it can be tested and
reused on its own (tests/integration/test_rtp_pure.py checks the imports).
"""

from . import estimator, extensions, header, keyframes

__all__ = ["estimator", "extensions", "header", "keyframes"]
