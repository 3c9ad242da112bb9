"""Typed SQLAlchemy 2 ORM of banditq: the database is the source of truth."""

from models.base import Base, utcnow
from models.tables import (
    Arm,
    Campaign,
    Instance,
    PolicySnapshot,
    Result,
    Trial,
    WorkerRow,
)

__all__ = [
    "Arm",
    "Base",
    "Campaign",
    "Instance",
    "PolicySnapshot",
    "Result",
    "Trial",
    "WorkerRow",
    "utcnow",
]
