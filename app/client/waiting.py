"""How a client waits for instances to finish: woken by the scheduler's ``NOTIFY`` on
PostgreSQL (a connection of its own, LISTENing, opened once and reopened if lost), a poll on
SQLite. Owned by one :class:`app.client.Client`; not thread-safe."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from sqlalchemy import Engine

from tasks.messages import NOTIFY_CHANNEL

log = logging.getLogger("banditq.client")


class Poll:
    """A poll interval that starts at ``start`` and grows by ``factor`` up to ``cap`` (for
    the first second of a wait) and ``late_cap`` after it."""

    def __init__(self, start: float, factor: float, cap: float, late_cap: float) -> None:
        self.delay, self.factor, self.cap, self.late_cap = start, factor, cap, late_cap
        self.started = time.monotonic()

    def next(self) -> float:
        delay = self.delay
        cap = self.cap if time.monotonic() - self.started < 1.0 else self.late_cap
        self.delay = min(self.delay * self.factor, cap)
        return delay


class Completions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listen: Any = None
        #: how many times the listening connection was (re)opened: a notice can only have
        #: been missed across a reopening
        self.generation = 0

    def listening(self) -> bool:
        """Make sure this client LISTENs (PostgreSQL; False on SQLite). Call before checking
        the state, so that no completion falls between the check and the wait."""
        if self.engine.dialect.name != "postgresql":
            return False
        if self._listen is None or self._listen.closed:
            import psycopg

            url = self.engine.url.set(drivername="postgresql")
            self._listen = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
            self._listen.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.generation += 1
        return True

    def pause(self, deadline: float | None, poll: Poll) -> set[str] | None:
        """Until the next completion notices (any instance), at most a second or until
        ``deadline``; on SQLite, the poll's next interval. Returns the finished instance
        ids noticed (as text), or None when nothing can be said (a poll, a time-out, a lost
        connection): the caller must then look."""
        if not self.listening():
            time.sleep(poll.next())
            return None
        left = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        seen: set[str] = set()
        try:
            for n in self._listen.notifies(timeout=min(left, 1.0), stop_after=1):
                seen.add(n.payload)
        except Exception as exc:  # a dropped connection: reopened by the next call
            log.debug("completion listener lost (%s); reconnecting", exc)
            self.close()
            time.sleep(min(left, 0.05))
            return None
        return seen or None

    def first(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a read on the listening connection (psycopg ``%(name)s``
        parameters); None when not listening, or when the connection failed (it is then
        reopened by the next :meth:`listening`)."""
        if self._listen is None or self._listen.closed:
            return None
        try:
            row = self._listen.execute(sql, params).fetchone()
        except Exception as exc:
            log.debug("completion listener lost (%s); reconnecting", exc)
            self.close()
            return None
        return tuple(row) if row is not None else None

    def close(self) -> None:
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
            self._listen = None
