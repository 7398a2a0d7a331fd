"""Every exception pysfu raises on purpose, as one hierarchy.

Each class carries a stable machine-readable ``code`` (what an HTTP or
signalling client is told) and the ``http_status`` an HTTP adapter answers
with, so adapters need no table of their own:

.. code-block:: text

    PysfuError                  error                  400
    ├── RoomNotFound            room_not_found         404
    ├── RoomExists              room_exists            409
    ├── RoomFull                room_full              409
    ├── HostTaken               host_taken             409
    ├── RoomClosedError         room_closed            404
    ├── DuplicateParticipant    duplicate_participant  409
    ├── Unauthorized            unauthorized           401
    ├── CredentialError         credential_invalid     401
    │   ├── CredentialUnknown   credential_unknown     401
    │   ├── CredentialUsed      credential_used        410
    │   └── CredentialExpired   credential_expired     410
    ├── TooManyRooms            too_many_rooms         503
    ├── TooManyPending          too_many_pending       503
    ├── BadOffer                bad_offer              422
    ├── WorkerFailed            worker_failed          503
    └── SignallingError         (per instance)         400
                                  rate_limited           429

:class:`SignallingError` is the one whose ``code`` is given per instance
(``bad_message``, ``bad_sdp``, ``rate_limited``, ...): it becomes an
``error`` message to the client that sent something unusable, and the
session goes on.

Two errors of the worker pipe are not part of the hierarchy, on purpose:
:class:`FrameError` and :class:`ProtocolError` mean the two ends of the
pool's private socket disagree, a bug rather than a refusal, so they are
``ValueError`` and are logged where they are caught.
"""

from __future__ import annotations

__all__ = [
    "BadOffer",
    "CredentialError",
    "CredentialExpired",
    "CredentialRefused",
    "CredentialUnknown",
    "CredentialUsed",
    "DuplicateParticipant",
    "FrameError",
    "HostTaken",
    "ProtocolError",
    "PysfuError",
    "RoomClosedError",
    "RoomExists",
    "RoomFull",
    "RoomNotFound",
    "SignallingError",
    "TooManyPending",
    "TooManyRooms",
    "Unauthorized",
    "WorkerFailed",
]


class PysfuError(Exception):
    """Base class of pysfu's errors."""

    #: Stable, machine-readable; what clients are told.
    code: str = "error"
    #: The status an HTTP adapter answers with.
    http_status: int = 400


class RoomNotFound(PysfuError):
    """No room has that id (or it was closed)."""

    code = "room_not_found"
    http_status = 404


class RoomExists(PysfuError):
    """A room with that id exists already."""

    code = "room_exists"
    http_status = 409


class RoomFull(PysfuError):
    """The room already has ``max_participants`` participants."""

    code = "room_full"
    http_status = 409


class HostTaken(PysfuError):
    """The room already has its one host."""

    code = "host_taken"
    http_status = 409


class RoomClosedError(PysfuError):
    """The room was closed; nobody can join it any more."""

    code = "room_closed"
    http_status = 404


class DuplicateParticipant(PysfuError):
    """A member of the room already has that participant id."""

    code = "duplicate_participant"
    http_status = 409


class Unauthorized(PysfuError):
    """A host credential was required and missing or wrong."""

    code = "unauthorized"
    http_status = 401


class CredentialError(PysfuError):
    """A join credential that cannot be used (base class)."""

    code = "credential_invalid"
    http_status = 401


class CredentialUnknown(CredentialError):
    """No participant was admitted under that id."""

    code = "credential_unknown"
    http_status = 401


class CredentialUsed(CredentialError):
    """The credentials were redeemed already: they are single-use."""

    code = "credential_used"
    http_status = 410


class CredentialExpired(CredentialError):
    """The credentials were not redeemed in time; the seat was freed."""

    code = "credential_expired"
    http_status = 410


class CredentialRefused(CredentialError):
    """The host refused this admitted participant, or a newcomer took its seat
    because it did not open its signalling in time."""

    code = "credential_refused"
    http_status = 403


class TooManyRooms(PysfuError):
    """The SFU holds ``LimitsConfig.max_rooms`` rooms already."""

    code = "too_many_rooms"
    http_status = 503


class TooManyPending(PysfuError):
    """``LimitsConfig.max_pending`` participants are admitted but not connected."""

    code = "too_many_pending"
    http_status = 503


class BadOffer(PysfuError):
    """A client's SDP offer cannot be answered (see :mod:`pysfu.answering`)."""

    code = "bad_offer"
    http_status = 422


class WorkerFailed(PysfuError):
    """The worker process holding the room died; its rooms are gone."""

    code = "worker_failed"
    http_status = 503


class SignallingError(PysfuError):
    """A client message the server cannot accept; becomes an ``error`` reply
    (:class:`pysfu.messages.Error`) to that client, and the session goes on.

    Unlike the other classes, its ``code`` is per instance: ``bad_message``,
    ``bad_json``, ``bad_sdp``, ``bad_candidate``, ``unknown_type``,
    ``too_large``, ``rate_limited``, ...
    """

    code = "bad_message"
    http_status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if code == "rate_limited":
            self.http_status = 429


class FrameError(ValueError):
    """The worker pipe's byte stream is not a valid sequence of frames
    (see :mod:`pysfu.workers.framing`); the peer is broken."""


class ProtocolError(ValueError):
    """A worker pipe frame from the other side does not have the expected shape."""
