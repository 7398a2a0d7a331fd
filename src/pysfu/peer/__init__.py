"""The server's end of one participant's peer connection.

:class:`PeerTransport` is the connection itself (ICE, the packet tap and
output, sender hooks, the RTCP tick).
"""

from .transport import PeerTransport

__all__ = ["PeerTransport"]
