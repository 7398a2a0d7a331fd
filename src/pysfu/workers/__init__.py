"""Spread rooms over worker processes, one per core (see :class:`WorkerPool`)."""

from ..errors import WorkerFailed
from .pool import RemoteParticipant, WorkerPool

__all__ = ["RemoteParticipant", "WorkerFailed", "WorkerPool"]
