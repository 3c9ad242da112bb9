"""The database side of ask/tell: waiting for the scheduler's decisions (woken by its
``NOTIFY`` on PostgreSQL, a poll on SQLite) and marking a trial told.

On PostgreSQL one autocommit psycopg connection of the client's own serves both (each ask
or tell is one or two statements on it, no ORM in the path); it LISTENs only during an ask,
so an idle client never holds back the server's notification queue. Owned by one
:class:`app.client.Client`; not thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, text

from app.client.waiting import Poll, autocommit_connection
from tasks.errors import InputError
from tasks.messages import ASK_CHANNEL, parse_time

log = logging.getLogger("banditq.client")

T = TypeVar("T")

#: (uuid, arm index, propensity, reason, policy version, attempt, budget, decided at)
Row = tuple[str, int, float, str, str, int, float | None, datetime | None]

_DECIDED = (
    "SELECT instance_id, uuid, arm_index, propensity, reason, policy_version, attempt, "
    "budget, created_at FROM trials WHERE instance_id {where}"
)
_TOLD = (
    "UPDATE trials SET told_at = {now}, told = {body} WHERE uuid = {uuid} "
    "AND campaign_id = {cid} AND state = 'running' AND told_at IS NULL RETURNING id"
)
_STATE = "SELECT state, told_at, error FROM trials WHERE uuid = {uuid} AND campaign_id = {cid}"


def _row(values: Any) -> Row:
    """A decision row from (uuid, arm, propensity, reason, version, attempt, budget, at)."""
    uuid, arm, p, reason, version, attempt, budget, at = values
    return (
        str(uuid),
        int(arm),
        float(p),
        str(reason),
        str(version),
        int(attempt),
        None if budget is None else float(budget),
        at if isinstance(at, datetime) or at is None else parse_time(at),
    )


def _notices(payload: str) -> list[tuple[int, Row]]:
    """The decisions in a notice: a JSON array of them (see
    ``app.scheduler.notices.packed_notices``) or, from an older scheduler, one; what does
    not parse is left out."""
    try:
        values = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(values, list):
        return []
    out = []
    for v in values if values and isinstance(values[0], list) else [values]:
        try:
            out.append((int(v[0]), _row(v[1:])))
        except (ValueError, TypeError, IndexError):
            continue
    return out


class AskWaiter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self._conn: Any = None
        self._listening = False

    # ------------------------------------------------------------------ connection
    def _pg(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = autocommit_connection(self.engine)
            self._listening = False
        return self._conn

    def _on_connection(self, work: Callable[[Any], T]) -> T:
        """``work(connection)``, with the connection reopened once if it was lost while
        idle (any other failure, or a second loss, is raised)."""
        import psycopg

        try:
            return work(self._pg())
        except psycopg.OperationalError as exc:
            log.debug("ask connection lost (%s); reconnecting", exc)
            self.close()
        return work(self._pg())

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement on the connection (reopened once if it was lost while idle)."""

        def run(conn: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

        return self._on_connection(run)

    def listen(self) -> None:
        """Start listening before the instances are written: no decision falls between."""
        if self.pg and not self._listening:
            self._execute(f"LISTEN {ASK_CHANNEL}", ())
            self._listening = True

    def release(self) -> None:
        """Stop listening between asks and drop what was queued."""
        if not (self.pg and self._listening and self._conn is not None):
            return
        try:
            self._conn.execute(f"UNLISTEN {ASK_CHANNEL}")
            for _ in self._conn.notifies(timeout=0.0):
                pass
        except Exception as exc:  # reopened by the next ask
            log.debug("ask connection lost (%s)", exc)
            self.close()
        self._listening = False

    def close(self) -> None:
        self._listening = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ decisions
    def insert(self, campaign_id: int, contexts: list[dict[str, Any]]) -> list[int] | None:
        """PostgreSQL: LISTEN and insert the instances in one round trip (a pipeline);
        their ids in order, or None when the campaign does not take instances."""
        from app.client.store import insert_pg_params, insert_pg_sql

        params = insert_pg_params(campaign_id, [(c, {}) for c in contexts])

        def run(conn: Any) -> list[Any]:
            with conn.pipeline():
                if not self._listening:
                    conn.execute(f"LISTEN {ASK_CHANNEL}")
                cur = conn.execute(insert_pg_sql(), params)
            self._listening = True
            return list(cur.fetchall())

        rows = self._on_connection(run)
        return [int(i) for i, _seq in sorted(rows, key=lambda r: r[1])] if rows else None

    def wait(self, ids: list[int], timeout: float) -> dict[int, Row] | None:
        """The decisions of instances ``ids``, once all are decided; None after
        ``timeout`` seconds. On PostgreSQL the notices carry the decisions; the table is
        read only for those a second did not bring (a notice missed across a reconnect
        costs a second, not the ask)."""
        deadline = time.monotonic() + timeout
        poll = Poll(0.001, 1.1, 0.004, 0.05)  # SQLite: a read is cheap, a late look is not
        got: dict[int, Row] = {}
        while True:
            if self.pg:
                self._notified(set(ids), got, deadline)
                if len(got) == len(ids):
                    return got
            got.update(self.decided([i for i in ids if i not in got]))
            if len(got) == len(ids):
                return got
            if time.monotonic() >= deadline:
                return None
            if not self.pg:
                time.sleep(min(poll.next(), max(0.0, deadline - time.monotonic())))

    def _notified(self, ids: set[int], got: dict[int, Row], deadline: float) -> None:
        """Decisions of ``ids`` from the notices, until all came, a second passed or the
        deadline."""
        left = min(1.0, max(0.0, deadline - time.monotonic()))
        try:
            for n in self._pg().notifies(timeout=left):
                for iid, row in _notices(n.payload):
                    if iid in ids:
                        got[iid] = row
                if len(got) == len(ids):
                    return
        except Exception as exc:
            log.debug("ask connection lost (%s); reconnecting", exc)
            self.close()
            self.listen()

    def decided(self, ids: list[int]) -> dict[int, Row]:
        if not ids:
            return {}
        if self.pg:
            rows = self._execute(_DECIDED.format(where="= ANY(%s)"), (ids,))
        else:
            stmt = text(_DECIDED.format(where="IN :ids")).bindparams(
                bindparam("ids", expanding=True)
            )
            with self.engine.connect() as conn:
                rows = [tuple(r) for r in conn.execute(stmt, {"ids": ids})]
        return {int(r[0]): _row(r[1:]) for r in rows}

    # ------------------------------------------------------------------ tells
    def mark_told(self, uuid: str, campaign_id: int, payload: str, name: str) -> None:
        """Mark the trial told, with the tell (``payload``, the result message's JSON) kept
        on it; InputError naming ``decision`` (nothing changed) when it is unknown, already
        told or abandoned."""
        now = datetime.now(UTC)
        if self.pg:
            sql = _TOLD.format(now="%s", body="CAST(%s AS jsonb)", uuid="%s", cid="%s")
            done = self._execute(sql, (now, payload, uuid, campaign_id))
        else:
            stmt = text(_TOLD.format(now=":now", body=":body", uuid=":uuid", cid=":cid"))
            with self.engine.begin() as conn:
                done = list(
                    conn.execute(
                        stmt, {"now": now, "body": payload, "uuid": uuid, "cid": campaign_id}
                    )
                )
        if done:
            return
        raise self._refused(uuid, campaign_id, name)

    def _refused(self, uuid: str, campaign_id: int, name: str) -> InputError:
        if self.pg:
            rows = self._execute(_STATE.format(uuid="%s", cid="%s"), (uuid, campaign_id))
        else:
            stmt = text(_STATE.format(uuid=":uuid", cid=":cid"))
            with self.engine.connect() as conn:
                rows = [tuple(r) for r in conn.execute(stmt, {"uuid": uuid, "cid": campaign_id})]
        if not rows:
            return InputError("decision", f"no decision {uuid!r} in campaign {name!r}")
        state, told_at, error = rows[0]
        if state == "abandoned":
            return InputError(
                "decision", f"decision {uuid} was {error or 'abandoned'}; ask again for a new one"
            )
        if told_at is not None or state in ("succeeded", "failed"):
            return InputError(
                "decision", f"decision {uuid} was already told (a decision is told once)"
            )
        return InputError("decision", f"decision {uuid} is {state}, not open for a tell")
