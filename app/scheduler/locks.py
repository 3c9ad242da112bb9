"""One scheduler at a time: a PostgreSQL advisory lock, or a file lock for SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from types import TracebackType
from typing import IO, Any

from sqlalchemy import Engine, text

from app.config import Settings
from tasks.errors import BanditqError

log = logging.getLogger("banditq.scheduler")
LOCK_KEY = 0x62616E64  # "band"


class SchedulerLockedError(BanditqError, RuntimeError):
    pass


class SchedulerLock:
    """Held for the scheduler's life; a second scheduler fails fast with a clear message."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._conn: Any = None
        self._file: IO[str] | None = None

    def __enter__(self) -> SchedulerLock:
        if self.engine.dialect.name == "postgresql":
            self._take_pg()
        else:
            path = self.settings.home / "scheduler.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w")  # noqa: SIM115 - held for the scheduler's lifetime
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                self._file.close()
                raise SchedulerLockedError(
                    f"another banditq scheduler is running on {self.settings.home}; stop it first"
                ) from exc
        return self

    def _take_pg(self) -> None:
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            raise SchedulerLockedError(
                "another banditq scheduler holds this database's lock; stop it first"
            )
        self._conn = conn

    def check(self) -> None:
        """Re-take the advisory lock when its session is gone (a PostgreSQL restart ends
        every session, and the lock with it). Raises :class:`SchedulerLockedError` if
        another scheduler took it meanwhile, or the database error if it is still down
        (the caller retries)."""
        if self.engine.dialect.name != "postgresql":
            return
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return
            except Exception:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        log.warning("the scheduler lock's database session was lost; taking the lock again")
        self._take_pg()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # closing the session releases the advisory lock
            except Exception:
                log.warning("could not close the lock connection cleanly")
        if self._file is not None:
            self._file.close()
