"""The scheduler's store layer: every statement the scheduler runs, in one place.

``base.SchedulerStore`` holds the portable forms (what the embedded SQLite default runs);
``postgres.PostgresStore`` overrides the hot-path writes with set-based statements and adds
the completion NOTIFY. The parts of the scheduler call named methods and never build SQL;
``tests/integration/test_scheduler_store.py`` runs one contract suite against both.
"""

from sqlalchemy import Engine

from app.scheduler.store.base import SchedulerStore
from app.scheduler.store.postgres import PostgresStore


def store_for(engine: Engine) -> SchedulerStore:
    """The store for ``engine``'s dialect."""
    return PostgresStore() if engine.dialect.name == "postgresql" else SchedulerStore()


__all__ = ["PostgresStore", "SchedulerStore", "store_for"]
