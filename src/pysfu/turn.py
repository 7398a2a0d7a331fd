"""Time-limited TURN credentials: the TURN REST scheme coturn supports.

A TURN server configured with a shared secret (coturn: ``use-auth-secret``
and ``static-auth-secret=<secret>``) accepts any username of the form
``<expiry>:<user>`` whose password is ``base64(HMAC-SHA1(secret, username))``,
until ``expiry`` (Unix time) passes. The application hands each client its
own credentials, valid for a while, instead of one static password that
works for everyone forever; rotating the secret on both sides revokes every
credential issued with the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

from .config import IceServer

__all__ = ["turn_credentials", "with_turn_credentials"]


def turn_credentials(
    secret: str,
    user: str,
    ttl: float,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[str, str]:
    """A (username, password) pair valid for ``ttl`` seconds from now.

    ``user`` names who it was issued to (it appears in the TURN server's
    logs); it must not contain ``:``.
    """
    if ":" in user:
        raise ValueError("the TURN user must not contain ':'")
    username = f"{int(clock() + ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def with_turn_credentials(
    servers: Iterable[IceServer],
    secret: str,
    user: str,
    ttl: float,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[IceServer, ...]:
    """``servers`` with fresh credentials on every ``turn:``/``turns:`` one."""
    username, password = turn_credentials(secret, user, ttl, clock=clock)
    return tuple(
        IceServer(server.urls, username, password)
        if server.urls.startswith(("turn:", "turns:"))
        else server
        for server in servers
    )
