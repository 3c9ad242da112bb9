"""The aggregate queries behind a report: per-round samples, per-sequence and per-time
buckets, per-arm sums, full-information costs; all over the reader views, read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from models.base import json_value

MAX_ROUNDS = 10_000


BUCKETS = 300


REASON_BUCKETS = 60


#: results after the latest snapshot that a report replays into the policy, at most
POLICY_TAIL = 5000


RECENT_ERRORS = 10


def epoch_sql(conn: Connection, column: str) -> str:
    """SQL for a timestamp column as seconds since the epoch, on either backend."""
    if conn.dialect.name == "postgresql":
        return f"extract(epoch from {column})"
    return f"CAST(strftime('%s', {column}) AS REAL)"


def as_time(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v)).replace(tzinfo=UTC)


@dataclass
class Series:
    """Values per bucket: ``x`` bucket starts (sequence numbers or epoch seconds)."""

    x: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def sample_rounds(
    conn: Connection, campaign: str, stride: int, features: list[str]
) -> dict[str, Any]:
    rows = conn.execute(
        text(
            "SELECT instance_seq, arm_index, propensity, cost, reason, context, latency_ms, "
            "quality, worker FROM trial_results WHERE campaign = :c AND status = 'succeeded' "
            "AND cost IS NOT NULL AND (instance_seq % :k) = 0 ORDER BY instance_seq"
        ),
        {"c": campaign, "k": stride},
    ).all()
    ctx = np.zeros((len(rows), len(features)))
    for i, r in enumerate(rows):
        c = json_value(r.context) or {}
        ctx[i] = [float(c.get(f, np.nan)) for f in features]
    nan = float("nan")
    return {
        "seq": np.array([r.instance_seq for r in rows], dtype=np.int64),
        "arm": np.array([r.arm_index for r in rows], dtype=np.int64),
        "propensity": np.array([r.propensity for r in rows], dtype=float),
        "cost": np.array([r.cost for r in rows], dtype=float),
        "reason": np.array([str(r.reason) for r in rows], dtype=object),
        "context": ctx,
        "latency_ms": np.array([nan if r.latency_ms is None else r.latency_ms for r in rows]),
        "quality": np.array([nan if r.quality is None else r.quality for r in rows]),
        "worker": np.array([str(r.worker) for r in rows], dtype=object),
    }


@dataclass
class SequenceBuckets:
    counts: dict[str, int]
    n_ok: int
    total: float
    cumulative: Series
    reasons: Series


def by_sequence(conn: Connection, campaign: str, width: int, merge: int) -> SequenceBuckets:
    """One pass over the campaign's trials: counts by status, the cumulative cost of the
    succeeded ones per ``width`` instances, and decisions by reason per ``merge`` buckets."""
    rows = conn.execute(
        text(
            "SELECT instance_seq / :w AS b, status, reason, count(*), sum(cost), count(cost) "
            "FROM trial_results WHERE campaign = :c GROUP BY instance_seq / :w, status, reason"
        ),
        {"c": campaign, "w": width},
    ).all()
    counts: dict[str, int] = {}
    cost: dict[int, float] = {}
    n_cost: dict[int, int] = {}
    reasons: list[tuple[float, str, float]] = []
    for b, status, reason, n, total, with_cost in rows:
        counts[str(status)] = counts.get(str(status), 0) + int(n)
        if status == "succeeded" and with_cost:
            cost[int(b)] = cost.get(int(b), 0.0) + float(total)
            n_cost[int(b)] = n_cost.get(int(b), 0) + int(with_cost)
        reasons.append((float(int(b) // merge * merge * width), str(reason), float(n)))
    keys = sorted(cost)
    return SequenceBuckets(
        counts=counts,
        n_ok=sum(n_cost.values()),
        total=float(sum(cost.values())),
        cumulative=Series(
            np.array([(b + 1) * width for b in keys], dtype=np.int64),
            {
                "n": np.cumsum([n_cost[b] for b in keys]).astype(float),
                "cost": np.cumsum([cost[b] for b in keys]),
            },
        ),
        reasons=pivot(reasons),
    )


def pivot(rows: list[tuple[float, str, float]]) -> Series:
    xs = sorted({r[0] for r in rows})
    pos = {x: i for i, x in enumerate(xs)}
    out: dict[str, np.ndarray] = {}
    for x, key, v in rows:
        out.setdefault(key, np.zeros(len(xs)))[pos[x]] += v
    return Series(np.array(xs, dtype=float), out)


def per_arm(conn: Connection, campaign: str, k: int) -> dict[str, np.ndarray]:
    out = {key: np.zeros(k) for key in ("n", "mean", "min", "max", "failed")}
    for r in conn.execute(
        text(
            "SELECT arm_index, sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), avg(cost), "
            "min(cost), max(cost), sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) "
            "FROM trial_results WHERE campaign = :c GROUP BY arm_index"
        ),
        {"c": campaign},
    ):
        a = int(r[0])
        if 0 <= a < k:
            vals = (r[1], r[2], r[3], r[4], r[5])
            for key, v in zip(("n", "mean", "min", "max", "failed"), vals, strict=True):
                out[key][a] = float("nan") if v is None else float(v)
    return out


def by_time(
    conn: Connection, campaign: str, start: datetime, end: datetime, buckets: int
) -> tuple[Series, dict[str, Series], datetime | None]:
    """One pass over the campaign's results by time bucket (from the campaign's creation to
    now): failures, time-outs and lease expiries; per worker, trials per second and mean
    latency (ms); and the last activity."""
    w = max(1.0, math.ceil((end - start).total_seconds() / buckets))
    e = epoch_sql(conn, "recorded_at")
    faults: list[tuple[float, str, float]] = []
    per: dict[str, dict[float, list[float]]] = {}
    last: datetime | None = None
    for worker, b, status, timeout, n, lat, newest in conn.execute(
        text(
            f"SELECT worker, floor({e} / :w) AS b, status, "
            "CASE WHEN error LIKE 'timed out%' THEN 1 ELSE 0 END AS tmo, count(*), "
            f"avg(latency_ms), max(recorded_at) FROM result_attempts WHERE campaign = :c "
            f"GROUP BY worker, floor({e} / :w), status, "
            "CASE WHEN error LIKE 'timed out%' THEN 1 ELSE 0 END"
        ),
        {"c": campaign, "w": w},
    ):
        t = float(b) * w
        newest = as_time(newest)
        if newest is not None and (last is None or newest > last):
            last = newest
        # every bucket with results is a point (zero faults is worth seeing)
        faults.append((t, "time-outs" if timeout else "failures", float(n * (status == "failed"))))
        if status == "succeeded":
            acc = per.setdefault(str(worker), {}).setdefault(t, [0.0, 0.0])
            acc[0] += float(n)
            acc[1] += float(n) * (float("nan") if lat is None else float(lat))
    ea = epoch_sql(conn, "at")
    for b, n in conn.execute(
        text(
            f"SELECT floor({ea} / :w), count(*) FROM trial_event_log WHERE campaign = :c "
            f"GROUP BY floor({ea} / :w)"
        ),
        {"c": campaign, "w": w},
    ):
        faults.append((float(b) * w, "lease expiries", float(n)))
    series = pivot(faults)
    for key in ("failures", "time-outs"):
        series.values.setdefault(key, np.zeros(len(series.x)))
    workers = {}
    for name, by_t in per.items():
        ts = sorted(by_t)
        workers[name] = Series(
            np.array(ts),
            {
                "per_s": np.array([by_t[t][0] / w for t in ts]),
                "latency_ms": np.array([by_t[t][1] / by_t[t][0] for t in ts]),
            },
        )
    return series, workers, last


def table_costs(
    conn: Connection, campaign: str, stride: int, seqs: np.ndarray, arms: list[dict[str, Any]]
) -> np.ndarray | None:
    """Every arm's cost on each sampled round of a ``table`` campaign (rows follow ``seqs``)."""
    from tasks.kinds.table import arm_key

    keys = [arm_key(a["arm"]) for a in arms]
    by_seq = {
        int(s): json_value(v)
        for s, v in conn.execute(
            text(
                "SELECT instance_seq, costs FROM table_costs WHERE campaign = :c "
                "AND (instance_seq % :k) = 0"
            ),
            {"c": campaign, "k": stride},
        )
    }
    out = np.full((len(seqs), len(keys)), np.nan)
    for i, s in enumerate(seqs):
        costs = by_seq.get(int(s)) or {}
        out[i] = [float(costs.get(k, np.nan)) for k in keys]
    return out if np.isfinite(out).all() else None
