"""Spread rooms over worker processes, one per core (see :class:`WorkerPool`)."""

from .pool import RemoteParticipant, WorkerFailed, WorkerPool

__all__ = ["RemoteParticipant", "WorkerFailed", "WorkerPool"]
