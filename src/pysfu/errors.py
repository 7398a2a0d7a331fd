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


class Unauthorized(PysfuError):
    """A host credential was required and missing or wrong."""

    code = "unauthorized"


class CredentialError(PysfuError):
    """A join credential that cannot be used (base class)."""

    code = "credential_invalid"


class CredentialUnknown(CredentialError):
    code = "credential_unknown"


class CredentialUsed(CredentialError):
    code = "credential_used"


class CredentialExpired(CredentialError):
    code = "credential_expired"
