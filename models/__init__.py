"""Typed SQLAlchemy 2 ORM of banditq: the database is the source of truth."""

from models.base import Base, utcnow
from models.tables import (
    Arm,
    BlobRef,
    Campaign,
    DatabaseIdentity,
    DeadLetter,
    Instance,
    PolicySnapshot,
    Result,
    StoreBlob,
    StoreChunk,
    StoreTag,
    Trial,
    TrialEvent,
    WorkerRow,
)

__all__ = [
    "Arm",
    "Base",
    "BlobRef",
    "Campaign",
    "DatabaseIdentity",
    "DeadLetter",
    "Instance",
    "PolicySnapshot",
    "Result",
    "StoreBlob",
    "StoreTag",
    "StoreChunk",
    "Trial",
    "TrialEvent",
    "WorkerRow",
    "utcnow",
]
