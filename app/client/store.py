"""Every statement the client runs, in one place: instance inserts (one
statement on PostgreSQL, the portable two on SQLite), counts, and a finished instance's
result. Plain functions of the caller's session or connection; nothing here commits.

Also the reads behind ``status``, ``results``, warm starts and inference batches. The report
and dashboard read only the reader views (``app/report/data.py``), the array store its own
tables (``tasks/store/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause, case, func, select, text, update
from sqlalchemy.orm import Session

from models import Arm, BlobRef, Instance, Result, Trial
from models import Campaign as CampaignRow
from models.base import json_dumps, utcnow
from models.states import FINAL_STATUSES, CampaignStatus, InstanceStatus

#: (context, spec) pairs, validated
Prepared = list[tuple[dict[str, Any], dict[str, Any]]]


def _insert_pg(ids: bool) -> TextClause:
    """One statement: take the campaign's next sequence numbers (only while it is active)
    and insert the rows, with ids given (``ids``) or from the id sequence."""
    # the id column, its value and its input array: present only with ids given
    col, val, arr = ("id, ", "v.id, ", "unnest(CAST(:ids AS integer[])), ") if ids else ("", "", "")
    return text(
        "WITH c AS (UPDATE campaigns SET n_instances = n_instances + :n "
        "WHERE id = :cid AND status = 'active' RETURNING n_instances) "
        f"INSERT INTO instances ({col}campaign_id, seq, context, spec, status, created_at) "
        f"SELECT {val}:cid, c.n_instances - :n + v.ord - 1, v.context, v.spec, 'pending', "
        f":now FROM c, ROWS FROM ({arr}jsonb_array_elements(CAST(:contexts AS jsonb)), "
        "jsonb_array_elements(CAST(:specs AS jsonb))) "
        f"WITH ORDINALITY AS v({col}context, spec, ord) RETURNING id, seq"
    )


_INSERT_PG = _insert_pg(ids=False)
_INSERT_PG_PSYCOPG: list[str] = []


def insert_pg_params(campaign_id: int, prepared: Prepared) -> dict[str, Any]:
    """The parameters of ``_INSERT_PG`` for ``prepared`` (context, spec) pairs: the
    contexts and specs each as one JSON array (one string each for the driver to pass;
    one encoding each, not one per row: a strict encoder is built per call)."""
    return {
        "cid": campaign_id,
        "n": len(prepared),
        "contexts": json_dumps([ctx for ctx, _sp in prepared]),
        "specs": json_dumps([sp for _ctx, sp in prepared]),
        "now": utcnow(),
    }


def insert_pg_sql() -> str:
    """``_INSERT_PG`` in psycopg's own parameter style (ask/tell's connection runs it
    without SQLAlchemy in the path)."""
    if not _INSERT_PG_PSYCOPG:
        from sqlalchemy.dialects.postgresql import psycopg

        _INSERT_PG_PSYCOPG.append(str(_INSERT_PG.compile(dialect=psycopg.dialect())))
    return _INSERT_PG_PSYCOPG[0]


_INSERT_PG_IDS = _insert_pg(ids=True)  # ids reserved by ``reserve_instance_ids``
#: one instance's final trial and its result, or no row while it is not finished
SOLUTION_SQL = (
    "SELECT t.id, t.state, r.iterations, r.converged, r.residual, r.latency_ms, r.outputs, "
    "a.value, r.error FROM instances i JOIN trials t ON t.instance_id = i.id "
    "JOIN arms a ON a.id = t.arm_id "
    "LEFT JOIN results r ON r.trial_id = t.id AND r.attempt = t.attempt "
    "WHERE i.id = {i} AND i.status IN ('done', 'failed') ORDER BY t.id DESC"
)
FINAL = tuple(s.value for s in FINAL_STATUSES)


def reserve_instance_ids(s: Session, n: int) -> list[int]:
    """``n`` instance ids, increasing, for ``insert_instances`` in this transaction: from
    the id sequence on PostgreSQL (never handed out twice); on SQLite past the largest id,
    after taking the database's write lock (a no-op write) so that no other writer can
    insert until this transaction ends."""
    if s.get_bind().dialect.name == "postgresql":
        rows = s.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('instances', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        ).all()
        return sorted(int(r[0]) for r in rows)
    s.execute(text("UPDATE campaigns SET n_instances = n_instances WHERE 0 = 1"))
    top = int(s.scalar(select(func.max(Instance.id))) or 0)
    return list(range(top + 1, top + 1 + n))


def insert_instances(
    s: Session, campaign_id: int, prepared: Prepared, ids: list[int] | None = None
) -> list[int] | None:
    """Reserve consecutive sequence numbers and insert (with ``ids`` when given, one per
    item, from :func:`reserve_instance_ids`); the ids in ``prepared``'s order, or None when
    the campaign does not take instances (not active, or deleted). The campaign row's lock
    serializes concurrent submitters."""
    if ids is not None and len(ids) != len(prepared):
        raise ValueError("insert_instances: one id per item")
    if s.get_bind().dialect.name == "postgresql":
        params = insert_pg_params(campaign_id, prepared)
        if ids is not None:
            params["ids"] = ids
        rows = s.execute(_INSERT_PG if ids is None else _INSERT_PG_IDS, params).all()
        return [int(i) for i, _seq in sorted(rows, key=lambda r: r[1])] if rows else None
    end = s.scalar(
        update(CampaignRow)
        .where(CampaignRow.id == campaign_id, CampaignRow.status == CampaignStatus.active.value)
        .values(n_instances=CampaignRow.n_instances + len(prepared))
        .returning(CampaignRow.n_instances)
    )
    if end is None:
        return None
    base = int(end) - len(prepared)
    rows_in = [
        {
            "campaign_id": campaign_id,
            "seq": base + j,
            "context": ctx,
            "spec": sp,
            "status": InstanceStatus.pending.value,
            **({} if ids is None else {"id": ids[j]}),
        }
        for j, (ctx, sp) in enumerate(prepared)
    ]
    return list(
        s.scalars(
            Instance.__table__.insert().returning(  # type: ignore[attr-defined]
                Instance.id, sort_by_parameter_order=True
            ),
            rows_in,
        )
    )


def link_blobs(s: Session, links: list[dict[str, Any]]) -> None:
    """Blob references of new instances (what `banditq store gc` keeps)."""
    if links:
        s.execute(BlobRef.__table__.insert(), links)  # type: ignore[attr-defined]


def instance_specs(s: Session, campaign_id: int, ids: Sequence[int]) -> dict[int, Any]:
    """The specs of those of ``ids`` that are instances of this campaign."""
    from models.base import json_value

    rows = s.execute(
        select(Instance.id, Instance.spec).where(
            Instance.campaign_id == campaign_id, Instance.id.in_(list(ids))
        )
    ).all()
    return {int(r[0]): json_value(r[1]) for r in rows}


def campaign_status(s: Session, campaign_id: int) -> str | None:
    return s.scalar(select(CampaignRow.status).where(CampaignRow.id == campaign_id))


def _counts_by(s: Session, column: Any, campaign: Any, campaign_id: int) -> dict[str, int]:
    """Rows of the campaign per value of ``column`` (``campaign``: the table's campaign id)."""
    rows = s.execute(
        select(column, func.count()).where(campaign == campaign_id).group_by(column)
    ).all()
    return {str(k): int(v) for k, v in rows}


def status_counts(s: Session, campaign_id: int) -> dict[str, int]:
    return _counts_by(s, Instance.status, Instance.campaign_id, campaign_id)


def finished_count(s: Session, instance_ids: Sequence[int]) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(Instance)
            .where(Instance.id.in_(list(instance_ids)), Instance.status.in_(FINAL))
        )
        or 0
    )


def latest_result(s: Session, campaign_id: int, instance_id: int) -> Any:
    """(id, state, outputs, trial error, result error) of the instance's last trial."""
    return s.execute(
        select(Trial.id, Trial.state, Result.outputs, Trial.error, Result.error)
        .join(Result, (Result.trial_id == Trial.id) & (Result.attempt == Trial.attempt))
        .join(Instance, Instance.id == Trial.instance_id)
        .where(Trial.instance_id == instance_id, Instance.campaign_id == campaign_id)
        .order_by(Trial.id.desc())
    ).first()


def campaign_named(s: Session, name: str) -> CampaignRow | None:
    return s.scalar(select(CampaignRow).where(CampaignRow.name == name))


def campaign_id_named(s: Session, name: str) -> int | None:
    return s.scalar(select(CampaignRow.id).where(CampaignRow.name == name))


def campaign_overview(s: Session) -> list[Any]:
    """(name, kind, policy, status, broken_reason, total, done, failed, last) per campaign,
    by name: one grouped read of instances and one of results."""
    counts = (
        select(
            Instance.campaign_id.label("cid"),
            func.count().label("total"),
            func.sum(case((Instance.status == "done", 1), else_=0)).label("done"),
            func.sum(case((Instance.status == "failed", 1), else_=0)).label("failed"),
        )
        .group_by(Instance.campaign_id)
        .subquery()
    )
    last = (
        select(Result.campaign_id.label("cid"), func.max(Result.recorded_at).label("last"))
        .group_by(Result.campaign_id)
        .subquery()
    )
    return list(
        s.execute(
            select(
                CampaignRow.name,
                CampaignRow.kind,
                CampaignRow.policy,
                CampaignRow.status,
                CampaignRow.broken_reason,
                counts.c.total,
                counts.c.done,
                counts.c.failed,
                last.c.last,
            )
            .outerjoin(counts, counts.c.cid == CampaignRow.id)
            .outerjoin(last, last.c.cid == CampaignRow.id)
            .order_by(CampaignRow.name)
        ).all()
    )


def campaign_names(s: Session) -> list[str]:
    return list(s.scalars(select(CampaignRow.name).order_by(CampaignRow.id)))


def arm_values(s: Session, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's arms in index order."""
    return list(
        s.scalars(select(Arm.value).where(Arm.campaign_id == campaign_id).order_by(Arm.index))
    )


def trial_state_counts(s: Session, campaign_id: int) -> dict[str, int]:
    return _counts_by(s, Trial.state, Trial.campaign_id, campaign_id)


def results_since(s: Session, campaign_id: int, since: datetime) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(Result)
            .where(Result.campaign_id == campaign_id, Result.recorded_at >= since)
        )
        or 0
    )


def per_arm_costs(s: Session, campaign_id: int) -> list[Any]:
    """(arm name, succeeded results, mean cost) per arm, in arm order."""
    return list(
        s.execute(
            select(Arm.name, func.count(Result.id), func.avg(Result.cost))
            .join(Trial, Trial.arm_id == Arm.id)
            .join(Result, (Result.trial_id == Trial.id) & (Result.status == "succeeded"))
            .where(Arm.campaign_id == campaign_id)
            .group_by(Arm.name, Arm.index)
            .order_by(Arm.index)
        ).all()
    )


def applied_results(s: Session, campaign_id: int) -> list[Any]:
    """(cost, arm value, context, quality) of the applied results, in id order."""
    return list(
        s.execute(
            select(Result.cost, Arm.value, Instance.context, Result.quality)
            .join(Trial, Trial.id == Result.trial_id)
            .join(Arm, Arm.id == Trial.arm_id)
            .join(Instance, Instance.id == Trial.instance_id)
            .where(Result.campaign_id == campaign_id, Result.applied.is_(True))
            .order_by(Result.id)
        ).all()
    )


def batch_shapes(s: Session, campaign_id: int) -> list[Any]:
    """The distinct (batch_size, seq_len_max) contexts submitted (inference campaigns)."""
    return list(
        s.execute(
            select(
                Instance.context["batch_size"].as_float(),
                Instance.context["seq_len_max"].as_float(),
            )
            .where(Instance.campaign_id == campaign_id)
            .distinct()
        ).all()
    )


def result_rows(conn: Connection, campaign: str) -> list[dict[str, Any]]:
    """The campaign's rows of the ``trial_results`` view, in submission order."""
    res = conn.execute(
        text("SELECT * FROM trial_results WHERE campaign = :c ORDER BY instance_seq, trial_id"),
        {"c": campaign},
    )
    return [dict(r._mapping) for r in res]
