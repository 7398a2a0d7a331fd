"""Exceptions raised by the core; each carries a stable machine-readable ``code``."""

from __future__ import annotations


class PysfuError(Exception):
    """Base class of pysfu's errors."""

    code = "error"


class RoomNotFound(PysfuError):
    """No room has that id (or it was closed)."""

    code = "room_not_found"


class RoomExists(PysfuError):
    """A room with that id exists already."""

    code = "room_exists"


class RoomFull(PysfuError):
    """The room already has ``max_participants`` participants."""

    code = "room_full"


class HostTaken(PysfuError):
    """The room already has its one host."""

    code = "host_taken"


class RoomClosedError(PysfuError):
    """The room was closed; nobody can join it any more."""

    code = "room_closed"


class DuplicateParticipant(PysfuError):
    """A member of the room already has that participant id."""

    code = "duplicate_participant"


class Unauthorized(PysfuError):
    """A host credential was required and missing or wrong."""

    code = "unauthorized"


class CredentialError(PysfuError):
    """A join credential that cannot be used (base class)."""

    code = "credential_invalid"


class CredentialUnknown(CredentialError):
    """No participant was admitted under that id."""

    code = "credential_unknown"


class CredentialUsed(CredentialError):
    """The credentials were redeemed already: they are single-use."""

    code = "credential_used"


class CredentialExpired(CredentialError):
    """The credentials were not redeemed in time; the seat was freed."""

    code = "credential_expired"


class CredentialRefused(CredentialError):
    """The host refused this admitted participant, or a newcomer took its seat
    because it did not open its signalling in time."""

    code = "credential_refused"


class TooManyRooms(PysfuError):
    """The SFU holds ``LimitsConfig.max_rooms`` rooms already."""

    code = "too_many_rooms"


class TooManyPending(PysfuError):
    """``LimitsConfig.max_pending`` participants are admitted but not connected."""

    code = "too_many_pending"


class BadOffer(PysfuError):
    """A client's SDP offer cannot be answered (see :mod:`pysfu.answering`)."""

    code = "bad_offer"
