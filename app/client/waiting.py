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


def autocommit_connection(engine: Engine) -> Any:
    """A psycopg connection of its own (autocommit) to ``engine``'s PostgreSQL database, for
    LISTEN and the statements on its path."""
    import psycopg

    url = engine.url.set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


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
        self._listening = False
        #: how many times this client started listening (a connection reopened, or LISTEN
        #: again after :meth:`release`): a notice can only have been missed across one
        self.generation = 0

    def listening(self) -> bool:
        """Make sure this client LISTENs (PostgreSQL; False on SQLite). Call before checking
        the state, so that no completion falls between the check and the wait."""
        if self.engine.dialect.name != "postgresql":
            return False
        for tries in (1, 2):
            if self._listen is None or self._listen.closed:
                self._listen = autocommit_connection(self.engine)
                self._listening = False
            if self._listening:
                return True
            try:
                self._listen.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except Exception as exc:  # a connection lost while idle: reopened once
                if tries == 2:
                    raise
                log.debug("completion listener lost (%s); reconnecting", exc)
                self.close()
                continue
            self._listening = True
            self.generation += 1
        return True

    def release(self) -> None:
        """Stop listening between waits (the connection stays open): a client that holds a
        LISTEN without reading would hold back PostgreSQL's notification queue, shared by
        every session, until it fills and the scheduler's NOTIFY fails."""
        if self._listen is None or self._listen.closed or not self._listening:
            return
        try:
            self._listen.execute("UNLISTEN *")
            for _ in self._listen.notifies(timeout=0.0):  # drop what is queued
                pass
        except Exception as exc:  # reopened by the next listening()
            log.debug("completion listener lost (%s); reconnecting", exc)
            self.close()
            return
        self._listening = False

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
        self._listening = False
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
            self._listen = None
