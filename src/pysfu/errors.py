"""Exceptions raised by the core; each carries a stable machine-readable ``code``."""

from __future__ import annotations


class PysfuError(Exception):
    """Base class of pysfu's errors."""

    code = "error"


class RoomNotFound(PysfuError):
    code = "room_not_found"


class RoomExists(PysfuError):
    code = "room_exists"


class RoomFull(PysfuError):
    """The room already has ``max_participants`` participants."""

    code = "room_full"


class HostTaken(PysfuError):
    """The room already has its one host."""

    code = "host_taken"


class RoomClosedError(PysfuError):
    code = "room_closed"


class DuplicateParticipant(PysfuError):
    code = "duplicate_participant"
