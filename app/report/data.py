"""What reports and the dashboard show, read from the reader views only (``banditq db
grant-reader`` is enough) and aggregated in SQL.

Per-round data (context, arm, propensity, cost) is a uniform sample of at most ``max_rounds``
instances (every ``stride``-th sequence number); sums over the whole campaign (cumulative cost,
decisions by reason, failures, throughput) are exact SQL aggregates in at most ``buckets``
buckets. Everything here is read-only and safe to call from several threads with one engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text

from app.cost_units import learnt_cost
from app.report.queries import (
    BUCKETS,
    MAX_ROUNDS,
    POLICY_TAIL,
    REASON_BUCKETS,
    RECENT_ERRORS,
    Series,
    as_time,
    by_sequence,
    by_time,
    per_arm,
    sample_rounds,
    table_costs,
)
from models.base import json_value
from tasks.errors import NotFoundError


@dataclass
class ReportData:
    """One campaign, as read at ``read_at``. Arrays of ``rounds`` are aligned by position."""

    overview: dict[str, Any]
    arms: list[dict[str, Any]]
    counts: dict[str, int]
    read_at: datetime
    n_succeeded: int
    total_cost: float
    last_activity: datetime | None
    stride: int
    rounds: dict[str, np.ndarray]
    cumulative: Series
    reasons: Series
    per_arm: dict[str, np.ndarray]
    faults: Series
    workers: dict[str, Series]
    table_costs: np.ndarray | None
    policy_state: dict[str, Any] | None
    policy_version: str | None
    #: (context, arm, cost as the policy learns it, quality) per applied result
    policy_tail: list[tuple[np.ndarray, int, float, float | None]] = field(default_factory=list)
    #: the latest failures and lease expiries, newest first (at, instance, arm, worker, error)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.overview["campaign"])

    @property
    def features(self) -> list[str]:
        return list(self.overview["context_features"] or [])

    @property
    def arm_labels(self) -> list[str]:
        return [str(a["arm_name"]) for a in self.arms]

    def positions(self) -> np.ndarray | None:
        """Numeric arm positions when every arm is one number under one key (e.g. omega)."""
        from app.policies.base import arm_positions

        pos = arm_positions([a["arm"] for a in self.arms])
        return pos[:, 0] if pos is not None and pos.shape[1] == 1 else None

    def baseline_arm(self) -> int:
        """The holdout's arm when the policy has one, else the guard's baseline arm when it
        has a guard, else the first arm."""
        holdout = (self.overview.get("policy_config") or {}).get("holdout")
        if isinstance(holdout, dict) and isinstance(holdout.get("arm"), int):
            return int(holdout["arm"])
        guard = (self.overview.get("policy_config") or {}).get("guard")
        if isinstance(guard, dict) and isinstance(guard.get("baseline_arm"), int):
            return int(guard["baseline_arm"])
        return 0

    def quality_floor(self) -> float | None:
        floor = ((self.overview.get("settings") or {}).get("kind_options") or {}).get(
            "quality_floor"
        )
        return float(floor) if isinstance(floor, int | float) else None

    def policy(self) -> Any:
        """The campaign's policy now: its latest snapshot plus the applied results after it
        (None when the snapshot's version is not the installed policy's)."""
        from app.policies.base import arm_positions
        from app.policies.registry import make_policy

        pol = make_policy(
            str(self.overview["policy"]),
            len(self.arms),
            len(self.features),
            arms=arm_positions([a["arm"] for a in self.arms]),
            seed=int(self.overview["seed"] or 0),
            config=dict(self.overview.get("policy_config") or {}),
            arm_values=[a["arm"] for a in self.arms],
        )
        if self.policy_state is not None:
            if pol.version != self.policy_version:
                return None
            pol.set_state(self.policy_state)
        for x, arm, cost, quality in self.policy_tail:
            pol.update(x, arm, cost, quality)
        return pol


def campaign_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(text("SELECT campaign FROM campaign_overview"))]


def campaign_list(engine: Engine, window_s: float = 60.0) -> list[dict[str, Any]]:
    """Every campaign with progress, trials per second over the last ``window_s`` seconds,
    failures and last activity (one grouped query over the results)."""
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    with engine.connect() as conn:
        over = conn.execute(
            text(
                "SELECT campaign, kind, policy, status, n_instances, n_updates, n_arms, "
                "created_at FROM campaign_overview ORDER BY created_at DESC"
            )
        ).all()
        agg = {
            r[0]: r
            for r in conn.execute(
                text(
                    "SELECT campaign, "
                    "SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN recorded_at >= :since THEN 1 ELSE 0 END), "
                    "MAX(recorded_at) FROM result_attempts GROUP BY campaign"
                ),
                {"since": since},
            )
        }
        broken: dict[str, str] = dict(
            conn.execute(text("SELECT campaign, reason FROM broken_campaigns")).all()
        )
    out = []
    for r in over:
        a = agg.get(r.campaign)
        ok, failed, recent, last = (a[1], a[2], a[3], a[4]) if a else (0, 0, 0, None)
        n = int(r.n_instances or 0)
        out.append(
            {
                "campaign": r.campaign,
                "kind": r.kind,
                "policy": r.policy,
                # the dashboard's list shows why a campaign stopped
                "status": f"broken: {broken[r.campaign]}" if r.campaign in broken else r.status,
                "broken_reason": broken.get(r.campaign),
                "instances": n,
                "succeeded": int(ok or 0),
                "failed": int(failed or 0),
                "progress": (int(ok or 0) + int(failed or 0)) / n if n else 0.0,
                "trials_per_s": int(recent or 0) / window_s,
                "last_activity": as_time(last),
                "created_at": as_time(r.created_at),
            }
        )
    return out


def load(
    engine: Engine, campaign: str, max_rounds: int = MAX_ROUNDS, buckets: int = BUCKETS
) -> ReportData:
    """Read one campaign; ``NotFoundError`` when there is none of that name."""
    c = {"c": campaign}
    with engine.connect() as conn:
        ov = conn.execute(text("SELECT * FROM campaign_overview WHERE campaign = :c"), c).first()
        if ov is None:
            raise NotFoundError(f"no campaign named {campaign!r}")
        overview = dict(ov._mapping)
        for key in ("policy_config", "context_features", "settings"):
            overview[key] = json_value(overview[key])
        arms = [
            {"arm_index": int(r[0]), "arm_name": r[1], "arm": json_value(r[2])}
            for r in conn.execute(
                text(
                    "SELECT arm_index, arm_name, arm FROM campaign_arms WHERE campaign = :c "
                    "ORDER BY arm_index"
                ),
                c,
            )
        ]
        # The sequence spans 0 .. n_instances - 1: bucket widths need no query.
        span = max(1, int(overview["n_instances"] or 0))
        stride = max(1, math.ceil(span / max_rounds))
        width = max(1, math.ceil(span / buckets))
        seq = by_sequence(conn, campaign, width, max(1, math.ceil(buckets / REASON_BUCKETS)))
        rounds = sample_rounds(conn, campaign, stride, overview["context_features"] or [])
        read_at = datetime.now(UTC)
        created = as_time(overview["created_at"]) or read_at
        faults, workers, last = by_time(conn, campaign, created, read_at, buckets)
        data = ReportData(
            overview=overview,
            arms=arms,
            counts=seq.counts,
            read_at=read_at,
            n_succeeded=seq.n_ok,
            total_cost=seq.total,
            last_activity=last,
            stride=stride,
            rounds=rounds,
            cumulative=seq.cumulative,
            reasons=seq.reasons,
            per_arm=per_arm(conn, campaign, len(arms)),
            faults=faults,
            workers=workers,
            table_costs=table_costs(conn, campaign, stride, rounds["seq"], arms)
            if overview["kind"] == "table"
            else None,
            policy_state=None,
            policy_version=None,
        )
        snap = conn.execute(
            text(
                "SELECT policy_version, state, last_result_id FROM policy_latest "
                "WHERE campaign = :c"
            ),
            c,
        ).first()
        after = 0
        if snap is not None:
            data.policy_version, data.policy_state = str(snap[0]), json_value(snap[1])
            after = int(snap[2])
        data.policy_tail = _policy_tail(conn, campaign, after, data.features, overview)
        data.errors = recent_errors(conn, campaign)
    return data


def recent_errors(conn: Connection, campaign: str, n: int = RECENT_ERRORS) -> list[dict[str, Any]]:
    """The newest failed results and lease expiries, newest first."""
    c = {"c": campaign, "n": n}
    rows = [
        {"at": as_time(r[0]), "instance": r[1], "arm": r[2], "worker": r[3], "error": r[4]}
        for r in conn.execute(
            text(
                "SELECT recorded_at, instance_seq, arm_index, worker, error FROM result_attempts "
                "WHERE campaign = :c AND status = 'failed' ORDER BY result_id DESC LIMIT :n"
            ),
            c,
        )
    ]
    rows += [
        {
            "at": as_time(r[0]),
            "instance": None,
            "arm": None,
            "worker": None,
            "error": f"{r[1]} (trial {r[2]}, attempt {r[3]}): {r[4]}",
        }
        for r in conn.execute(
            text(
                "SELECT at, event, trial_id, attempt, detail FROM trial_event_log "
                "WHERE campaign = :c ORDER BY at DESC LIMIT :n"
            ),
            c,
        )
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda r: r["at"] or epoch, reverse=True)
    return rows[:n]


def _policy_tail(
    conn: Connection, campaign: str, after: int, features: list[str], overview: dict[str, Any]
) -> list[tuple[np.ndarray, int, float, float | None]]:
    """Applied results after the snapshot, in update order (the newest ``POLICY_TAIL``), with
    their costs as the policy learns them. Read through the reader's views only (the
    dashboard's role sees no table), which do not say whether a result was censored: a
    censored result is applied as its cost, a lower bound."""
    unit = (overview.get("policy_config") or {}).get("cost_unit")
    rows = conn.execute(
        text(
            "SELECT ra.arm_index, ra.cost, ra.quality, tr.context, ra.metrics "
            "FROM result_attempts ra "
            "JOIN trial_results tr ON tr.trial_id = ra.trial_id AND tr.attempt = ra.attempt "
            "WHERE ra.campaign = :c AND ra.applied AND ra.result_id > :after "
            "ORDER BY ra.result_id DESC LIMIT :n"
        ),
        {"c": campaign, "after": after, "n": POLICY_TAIL},
    ).all()
    out = []
    for arm, cost, quality, context, metrics in reversed(rows):
        ctx = json_value(context) or {}
        x = np.array([float(ctx.get(f, 0.0)) for f in features])
        try:
            learnt = learnt_cost(str(overview["kind"]), unit, cost, json_value(metrics))
        except ValueError:
            continue  # not as applied: the scheduler quarantines such a result
        q = None if quality is None else float(quality)
        out.append((x, int(arm), learnt, q))
    return out
