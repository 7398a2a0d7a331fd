"""Former home of the rooms API: kept so that old imports work.

:class:`RoomsBackend` is now :class:`pysfu.rooms.Rooms` (with
:class:`~pysfu.rooms.JoinRequest` and :class:`~pysfu.rooms.RoomOptions`), and
:class:`RoomSeats` lives in :mod:`pysfu.rooms`.
"""

from __future__ import annotations

from .rooms import Rooms, RoomSeats

__all__ = [
    "RoomSeats",
    "RoomsBackend",
]

#: Deprecated name of :class:`pysfu.rooms.Rooms`.
RoomsBackend = Rooms
