"""Secrets are kept as digests: what the server stores and compares.

A host key, an ICE password or a WHIP session token is looked up and
compared by its SHA-256 digest (with :func:`hmac.compare_digest`), never as
the secret itself, so a memory dump or a log of the tables does not hold it.
"""

from __future__ import annotations

import hashlib

__all__ = ["secret_digest"]


def secret_digest(secret: str) -> bytes:
    """The SHA-256 digest of ``secret``'s UTF-8 bytes."""
    return hashlib.sha256(secret.encode()).digest()
