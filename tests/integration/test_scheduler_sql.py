"""The scheduler's SQL on PostgreSQL: set-based statements, as many per step early in a
campaign as late, and few (results, decisions, marks: one statement each); its reads use
indexes on a long history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from app.client import Client
from app.config import Settings
from tests.inline import InlineScheduler, statements_per_step
from workers.run_trial import execute


def test_postgresql_statements_per_step_are_few_and_do_not_grow_with_history(
    pg_settings: Settings,
) -> None:
    counts = statements_per_step(pg_settings)
    assert len(counts) == 2 and counts[0] == counts[1], counts
    # Per step: the results' trials, one statement recording them, the published marks,
    # the pending instances, one statement recording the decisions: never one per trial.
    assert counts[0] <= 5, counts
    wide = statements_per_step(pg_settings, in_flight=30, name="wide")
    assert wide == counts, (counts, wide)  # 3x the trials per step, no more SQL


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _plan_nodes(child)
    return out


def test_the_schedulers_queries_use_indexes_on_a_long_history(pg_settings: Settings) -> None:
    """Every SELECT a scheduler step and sweep run once the campaign is loaded, EXPLAINed
    with its own parameters on 40,000 instances (30,000 decided, finished, with results): no
    sequential scan of the growing tables, so the per-step cost stays flat with history."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "big", "noop", [{"cost": 1.0}, {"cost": 2.0}], context_features=["x"], max_in_flight=32
    )
    n, finished = 40_000, 30_000
    with client.engine.begin() as c:
        cid, arm = c.execute(
            text("SELECT campaign_id, id FROM arms WHERE campaign_id = :c ORDER BY index"),
            {"c": camp.id},
        ).first()  # type: ignore[misc]
        c.execute(
            text(
                "INSERT INTO instances (campaign_id, seq, context, spec, status, created_at) "
                "SELECT :c, g, jsonb_build_object('x', g % 7), '{}'::jsonb, "
                "CASE WHEN g <= :f THEN 'done' ELSE 'pending' END, now() "
                "FROM generate_series(1, :n) g"
            ),
            {"c": cid, "n": n, "f": finished},
        )
        c.execute(
            text(
                "INSERT INTO trials (uuid, campaign_id, instance_id, arm_id, arm_index, "
                "propensity, policy_name, policy_version, reason, state, attempt, created_at, "
                "published_at, finished_at) "
                "SELECT md5(i.id::text)::uuid::text, :c, i.id, :a, 0, 1.0, 'smooth-ts', '1', "
                "'policy', 'succeeded', 1, now(), now(), now() "
                "FROM instances i WHERE i.campaign_id = :c AND i.status = 'done'"
            ),
            {"c": cid, "a": arm},
        )
        c.execute(
            text(
                "INSERT INTO results (trial_id, campaign_id, attempt, status, cost, metrics, "
                "applied, recorded_at) SELECT t.id, :c, 1, 'succeeded', 1.0, '{}'::jsonb, "
                "true, now() FROM trials t WHERE t.campaign_id = :c"
            ),
            {"c": cid},
        )
        c.execute(text("ANALYZE"))
    sch = InlineScheduler(pg_settings)
    captured: list[tuple[str, Any]] = []

    def _capture(_conn: Any, _cur: Any, statement: str, params: Any, *_a: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, params))

    sch.sweep()  # loads the campaign (a one-off replay of its results), first decisions
    for engine in {sch.engine, sch.decision_engine}:
        event.listen(engine, "before_cursor_execute", _capture)
    sch.sweep()  # pending campaigns, outbox, expired leases
    for p in sch.published:
        sch.feed(execute(p, "w"))
    sch.step()  # results' trials, recording, pending instances, decisions
    assert len(sch.published) >= 64
    seen: set[str] = set()
    indexes: set[str] = set()
    raw = sch.engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, params in captured:
            if statement.lstrip().upper().startswith("WITH"):
                continue  # the writes: their reads are by primary key (unnest joins)
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, params)
            row = cur.fetchone()
            assert row is not None
            plan = row[0][0]["Plan"]
            for node in _plan_nodes(plan):
                seen.add(node["Node Type"])
                if "Index Name" in node:
                    indexes.add(node["Index Name"])
                assert not (
                    node["Node Type"] == "Seq Scan"
                    and node.get("Relation Name") in ("instances", "trials", "results")
                ), f"sequential scan of {node.get('Relation Name')} in:\n{statement}"
        raw.rollback()
    finally:
        raw.close()
    assert seen & {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
    # pending instances, results' trials by uuid, the outbox and lease sweeps
    assert {"ix_instances_pending", "uq_trials_uuid", "ix_trials_outbox"} <= indexes, indexes
