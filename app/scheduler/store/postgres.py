"""The PostgreSQL store: the hot-path writes as one statement per kind of write per burst.

Each write takes its rows as one JSON document (``jsonb_to_recordset``), so the statement
text is the same whatever the burst size: psycopg converts and caches (then prepares) it
once. SQLAlchemy's portable forms cost the scheduler a large share of its time here:
"insertmanyvalues" renders a new multi-row INSERT for every batch size, which psycopg
re-parses each time, and ORM bulk UPDATEs by primary key run one statement per row. A
finished instance raises a NOTIFY for the clients waiting on it.

Ownership: as :class:`~app.scheduler.store.base.SchedulerStore`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.scheduler.errors import DecisionFenced
from app.scheduler.store.base import SchedulerStore
from app.scheduler.store.selects import TRIAL_COLS, trials_select
from models.base import finite_json
from models.states import OPEN_STATES
from tasks.messages import ASK_CHANNEL, NOTIFY_CHANNEL

TRIAL_COLUMNS = (
    ("uuid", "varchar"),
    ("campaign_id", "integer"),
    ("instance_id", "integer"),
    ("arm_id", "integer"),
    ("arm_index", "integer"),
    ("propensity", "float8"),
    ("policy_name", "varchar"),
    ("policy_version", "varchar"),
    ("reason", "varchar"),
    ("state", "varchar"),
    ("attempt", "integer"),
    ("created_at", "timestamptz"),
    ("device_class", "varchar"),
    ("budget", "float8"),
    ("budget_unit", "varchar"),
    ("published_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("lease_expires_at", "timestamptz"),
)
RESULT_COLUMNS = (
    ("trial_id", "integer"),
    ("campaign_id", "integer"),
    ("attempt", "integer"),
    ("status", "varchar"),
    ("cost", "float8"),
    ("iterations", "integer"),
    ("converged", "boolean"),
    ("residual", "float8"),
    ("latency_ms", "float8"),
    ("quality", "float8"),
    ("device", "varchar"),
    ("worker", "varchar"),
    ("error", "text"),
    ("metrics", "jsonb"),
    ("outputs", "jsonb"),
    ("applied", "boolean"),
    ("censored", "boolean"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("recorded_at", "timestamptz"),
)
FINISH_COLUMNS = (
    ("id", "integer"),
    ("state", "varchar"),
    ("worker", "varchar"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("error", "text"),
)
JSON_COLUMNS = frozenset({"metrics", "outputs"})


def _recordset(columns: Sequence[tuple[str, str]], prefix: str = "") -> str:
    """``jsonb_to_recordset(CAST(:<prefix>rows AS jsonb)) AS v(a t, ...)``: a burst's rows as
    one JSON document (see :func:`_records`)."""
    cols = ", ".join(f"{c} {t}" for c, t in columns)
    return f"jsonb_to_recordset(CAST(:{prefix}rows AS jsonb)) AS v({cols})"


def _select_list(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"v.{c}" for c, _ in columns)


def _records(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """``rows``' ``columns`` as the JSON array :func:`_recordset` reads: one string, which
    the driver passes as is (an array parameter per column costs psycopg a regular
    expression per text element), timestamps in ISO form. A non-finite float in a plain
    column travels as PostgreSQL's own spelling ("NaN", "Infinity"); in a JSON column it
    becomes null, as :func:`models.base.json_dumps` stores it."""
    stamps = [c for c, t in columns if t == "timestamptz"]
    data = [{c: r[c] for c, _t in columns} for r in rows]
    iso: dict[Any, str] = {}  # a burst's rows share a few instants: each spelled once
    for d in data:
        for c in stamps:
            v = d[c]
            if v is not None:
                s = iso.get(v)
                if s is None:
                    s = iso[v] = v.isoformat()
                d[c] = s
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        return json.dumps([_spelled(d) for d in data], allow_nan=False)


def _spelled(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c, v in row.items():
        if c in JSON_COLUMNS:
            out[c] = finite_json(v)
        elif isinstance(v, float) and not math.isfinite(v):
            out[c] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
        else:
            out[c] = v
    return out


# A decision burst in one statement: the trials, and their instances marked decided.
_TRIALS_INSERT = (
    f"INSERT INTO trials ({', '.join(c for c, _ in TRIAL_COLUMNS)}) "
    f"SELECT {_select_list(TRIAL_COLUMNS)} FROM {_recordset(TRIAL_COLUMNS)} "
    "RETURNING instance_id"
)
_DECIDE = text(
    f"WITH ins AS ({_TRIALS_INSERT}) "
    "UPDATE instances AS i SET status = 'decided' FROM ins WHERE i.id = ins.instance_id "
    "AND i.status = 'pending' RETURNING i.id"
)
# The same, with the askers' NOTIFYs (a CTE with a volatile function runs once, and only
# because the final SELECT reads it).
_DECIDE_ASKED = text(
    f"WITH ins AS ({_TRIALS_INSERT}), "
    "u AS (UPDATE instances AS i SET status = 'decided' FROM ins WHERE i.id = ins.instance_id "
    "AND i.status = 'pending' RETURNING i.id), "
    "n AS (SELECT count(pg_notify(:c, v)) AS n FROM unnest(CAST(:notices AS text[])) AS v) "
    "SELECT u.id FROM u CROSS JOIN n"
)
# A result burst in one statement (data-modifying CTEs all run, once, to completion): the
# results, their trials finished, their instances' status, the campaigns' update counts.
# RETURNING pairs each id with its trial (one result per trial in a burst), so the caller
# never depends on the order rows come back in.
_RECORD = text(
    f"WITH r AS (INSERT INTO results ({', '.join(c for c, _ in RESULT_COLUMNS)}) "
    f"SELECT {_select_list(RESULT_COLUMNS)} FROM {_recordset(RESULT_COLUMNS)} "
    "RETURNING id, trial_id), "
    "t AS (UPDATE trials AS t SET state = v.state, worker = v.worker, "
    "started_at = v.started_at, finished_at = v.finished_at, error = v.error "
    f"FROM {_recordset(FINISH_COLUMNS, 'f_')} WHERE t.id = v.id), "
    "i AS (UPDATE instances AS i SET status = v.status "
    "FROM unnest(CAST(:i_id AS integer[]), CAST(:i_status AS varchar[])) AS v(id, status) "
    "WHERE i.id = v.id), "
    "c AS (UPDATE campaigns AS c SET n_updates = c.n_updates + v.n "
    "FROM unnest(CAST(:c_id AS integer[]), CAST(:c_n AS integer[])) AS v(id, n) "
    "WHERE c.id = v.id), "
    # stored arrays the results refer to (kept by `store gc`); an INSERT in WITH always runs
    "b AS (INSERT INTO blob_refs (sha256, nbytes, campaign_id, result_id, created_at) "
    "SELECT v.sha256, v.nbytes, v.campaign_id, r.id, now() FROM unnest("
    "CAST(:b_trial AS integer[]), CAST(:b_sha256 AS varchar[]), CAST(:b_nbytes AS bigint[]), "
    "CAST(:b_campaign AS integer[])) AS v(trial_id, sha256, nbytes, campaign_id) "
    "JOIN r ON r.trial_id = v.trial_id) "
    # the cross join with one row makes the NOTIFYs run (a CTE nothing reads would not)
    "SELECT r.id, r.trial_id FROM r, (SELECT count(pg_notify('banditq_done', CAST(v AS text))) "
    "FROM unnest(CAST(:i_id AS integer[])) AS v) AS n"
)
_MARK_PUBLISHED = text(
    "UPDATE trials SET published_at = :now, lease_expires_at = :until "
    "WHERE uuid = ANY(CAST(:uuids AS varchar[])) AND state = ANY(CAST(:open AS varchar[]))"
)
_MARK_PUBLISHED_ATTEMPTS = text(
    "UPDATE trials t SET published_at = :now, lease_expires_at = :until "
    "FROM unnest(CAST(:uuids AS varchar[]), CAST(:attempts AS integer[])) AS m(uuid, attempt) "
    "WHERE t.uuid = m.uuid AND t.attempt = m.attempt "
    "AND t.state = ANY(CAST(:open AS varchar[]))"
)


class PostgresStore(SchedulerStore):
    """The scheduler's statements on PostgreSQL."""

    #: ``trials.uuid`` among the burst's: one array parameter, not one per uuid
    trials_for = trials_select(
        TRIAL_COLS.uuid == any_(bindparam("uuids", type_=postgresql.ARRAY(String)))
    )

    pg = True

    def record_decisions(
        self, session: Session, trials: list[dict[str, Any]], asked: Sequence[str] = ()
    ) -> None:
        if not trials:
            self.notify_asked(session, list(asked))
            return
        params: dict[str, Any] = {"rows": _records(trials, TRIAL_COLUMNS)}
        if asked:  # the askers' notices in the same statement: one round trip less
            params.update(c=ASK_CHANNEL, notices=list(asked))
        decided = session.execute(_DECIDE_ASKED if asked else _DECIDE, params).all()
        if len(decided) != len(trials):
            raise DecisionFenced(len(trials) - len(decided))

    def record_results(
        self,
        session: Session,
        results: list[dict[str, Any]],
        finished: list[dict[str, Any]],
        statuses: list[dict[str, Any]],
        per_campaign: dict[int, int],
        links: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        if not results:
            return []
        links = links or []
        params = {
            "rows": _records(results, RESULT_COLUMNS),
            "f_rows": _records(finished, FINISH_COLUMNS),
            "i_id": [r["id"] for r in statuses],
            "i_status": [r["status"] for r in statuses],
            "c_id": list(per_campaign),
            "c_n": list(per_campaign.values()),
            "b_trial": [b["trial_id"] for b in links],
            "b_sha256": [b["sha256"] for b in links],
            "b_nbytes": [b["nbytes"] for b in links],
            "b_campaign": [b["campaign_id"] for b in links],
        }
        ids = dict((trial_id, rid) for rid, trial_id in session.execute(_RECORD, params).all())
        return [ids[r["trial_id"]] for r in results]

    def mark_published(
        self,
        session: Session,
        uuids: list[str],
        now: datetime,
        until: datetime,
        attempts: list[int] | None = None,
    ) -> None:
        if uuids:
            params = {"uuids": uuids, "now": now, "until": until, "open": list(OPEN_STATES)}
            if attempts is None:
                session.execute(_MARK_PUBLISHED, params)
            else:
                session.execute(_MARK_PUBLISHED_ATTEMPTS, {**params, "attempts": attempts})

    def fail_trial(
        self, session: Session, trial_id: int, instance_id: int, reason: str, at: datetime
    ) -> None:
        super().fail_trial(session, trial_id, instance_id, reason, at)
        # waiting clients wake up (see app.client.completion)
        session.execute(
            text("SELECT pg_notify(:c, :i)"), {"c": NOTIFY_CHANNEL, "i": str(instance_id)}
        )
