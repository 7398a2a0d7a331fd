"""The code of docs/how-to/stun-turn.md and docs/how-to/nat.md."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from pysfu import SFU, IceConfig, IceServer, SFUConfig


# --8<-- [start:nat]
def behind_nat(private_address: str, public_address: str) -> SFU:
    """An SFU on a host whose ``private_address`` is NATed 1:1 to ``public_address``."""
    return SFU(
        SFUConfig(
            ice=IceConfig(
                host_addresses=(private_address,),  # bind here...
                announced_address=public_address,  # ...and tell clients this
            )
        )
    )
    # --8<-- [end:nat]


# --8<-- [start:stun]
def with_stun(stun_url: str = "stun:stun.example.org:3478") -> SFU:
    """An SFU that asks a STUN server for its public address, per connection."""
    return SFU(SFUConfig(ice=IceConfig(servers=(IceServer(stun_url),))))
    # --8<-- [end:stun]


# --8<-- [start:turn-credentials]
def turn_credentials(
    secret: str, user: str, ttl: int = 3600, now: float | None = None
) -> tuple[str, str]:
    """Short-lived TURN credentials for coturn's ``use-auth-secret`` mode.

    The "TURN REST API" scheme: the username is the expiry time and a name,
    the password an HMAC-SHA1 of the username keyed with the secret that
    coturn shares with the join backend. Nothing is stored anywhere.
    """
    expires = int((time.time() if now is None else now) + ttl)
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def client_ice_servers(secret: str, participant_id: str) -> list[dict[str, str]]:
    """The ``iceServers`` a join backend hands one client (browser format)."""
    username, password = turn_credentials(secret, participant_id)
    return [
        {"urls": "stun:turn.example.org:3478"},
        {
            "urls": "turn:turn.example.org:3478?transport=udp",
            "username": username,
            "credential": password,
        },
    ]
    # --8<-- [end:turn-credentials]
