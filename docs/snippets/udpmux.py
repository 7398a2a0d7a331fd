"""The code of docs/how-to/nat.md's "One UDP port for every peer"."""

from __future__ import annotations

from pysfu import SFU, IceConfig, SFUConfig


# --8<-- [start:one-port]
def on_one_port(private_address: str, public_address: str, port: int) -> SFU:
    """An SFU receiving every peer on UDP ``port``, NATed 1:1 (or published
    by a container runtime) to the same port of ``public_address``."""
    return SFU(
        SFUConfig(
            ice=IceConfig(
                host_addresses=(private_address,),
                announced_address=public_address,
                shared_port=port,  # every connection's candidate: this port
            )
        )
    )
    # --8<-- [end:one-port]
