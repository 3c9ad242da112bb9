"""What reports and the dashboard show, read from the reader views only (``banditq db
grant-reader`` is enough) and aggregated in SQL.

Per-round data (context, arm, propensity, cost) is a uniform sample of at most ``max_rounds``
instances (every ``stride``-th sequence number); sums over the whole campaign (cumulative cost,
decisions by reason, failures, throughput) are exact SQL aggregates in at most ``buckets``
buckets. Everything here is read-only and safe to call from several threads with one engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text

from app.errors import NotFoundError

MAX_ROUNDS = 10_000
BUCKETS = 300
REASON_BUCKETS = 60
#: results after the latest snapshot that a report replays into the policy, at most
POLICY_TAIL = 5000
RECENT_ERRORS = 10


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def _epoch(conn: Connection, column: str) -> str:
    """SQL for a timestamp column as seconds since the epoch, on either backend."""
    if conn.dialect.name == "postgresql":
        return f"extract(epoch from {column})"
    return f"CAST(strftime('%s', {column}) AS REAL)"


def _time(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v)).replace(tzinfo=UTC)


@dataclass
class Series:
    """Values per bucket: ``x`` bucket starts (sequence numbers or epoch seconds)."""

    x: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


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
        """The guard's baseline arm when the policy has a guard, else the first arm."""
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
                "status": r.status,
                "instances": n,
                "succeeded": int(ok or 0),
                "failed": int(failed or 0),
                "progress": (int(ok or 0) + int(failed or 0)) / n if n else 0.0,
                "trials_per_s": int(recent or 0) / window_s,
                "last_activity": _time(last),
                "created_at": _time(r.created_at),
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
            overview[key] = _json(overview[key])
        arms = [
            {"arm_index": int(r[0]), "arm_name": r[1], "arm": _json(r[2])}
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
        seq = _by_sequence(conn, campaign, width, max(1, math.ceil(buckets / REASON_BUCKETS)))
        rounds = _rounds(conn, campaign, stride, overview["context_features"] or [])
        read_at = datetime.now(UTC)
        created = _time(overview["created_at"]) or read_at
        faults, workers, last = _by_time(conn, campaign, created, read_at, buckets)
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
            per_arm=_per_arm(conn, campaign, len(arms)),
            faults=faults,
            workers=workers,
            table_costs=_table_costs(conn, campaign, stride, rounds["seq"], arms)
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
            data.policy_version, data.policy_state = str(snap[0]), _json(snap[1])
            after = int(snap[2])
        data.policy_tail = _policy_tail(conn, campaign, after, data.features)
        data.errors = recent_errors(conn, campaign)
    return data


def recent_errors(conn: Connection, campaign: str, n: int = RECENT_ERRORS) -> list[dict[str, Any]]:
    """The newest failed results and lease expiries, newest first."""
    c = {"c": campaign, "n": n}
    rows = [
        {"at": _time(r[0]), "instance": r[1], "arm": r[2], "worker": r[3], "error": r[4]}
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
            "at": _time(r[0]),
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
    conn: Connection, campaign: str, after: int, features: list[str]
) -> list[tuple[np.ndarray, int, float, float | None]]:
    """Applied results after the snapshot, in update order (the newest ``POLICY_TAIL``)."""
    rows = conn.execute(
        text(
            "SELECT ra.arm_index, ra.cost, ra.quality, tr.context FROM result_attempts ra "
            "JOIN trial_results tr ON tr.trial_id = ra.trial_id AND tr.attempt = ra.attempt "
            "WHERE ra.campaign = :c AND ra.applied AND ra.result_id > :after "
            "ORDER BY ra.result_id DESC LIMIT :n"
        ),
        {"c": campaign, "after": after, "n": POLICY_TAIL},
    ).all()
    out = []
    for arm, cost, quality, context in reversed(rows):
        ctx = _json(context) or {}
        x = np.array([float(ctx.get(f, 0.0)) for f in features])
        out.append((x, int(arm), float(cost), None if quality is None else float(quality)))
    return out


def _rounds(conn: Connection, campaign: str, stride: int, features: list[str]) -> dict[str, Any]:
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
        c = _json(r.context) or {}
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
class _Sequence:
    counts: dict[str, int]
    n_ok: int
    total: float
    cumulative: Series
    reasons: Series


def _by_sequence(conn: Connection, campaign: str, width: int, merge: int) -> _Sequence:
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
    return _Sequence(
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
        reasons=_pivot(reasons),
    )


def _pivot(rows: list[tuple[float, str, float]]) -> Series:
    xs = sorted({r[0] for r in rows})
    pos = {x: i for i, x in enumerate(xs)}
    out: dict[str, np.ndarray] = {}
    for x, key, v in rows:
        out.setdefault(key, np.zeros(len(xs)))[pos[x]] += v
    return Series(np.array(xs, dtype=float), out)


def _per_arm(conn: Connection, campaign: str, k: int) -> dict[str, np.ndarray]:
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


def _by_time(
    conn: Connection, campaign: str, start: datetime, end: datetime, buckets: int
) -> tuple[Series, dict[str, Series], datetime | None]:
    """One pass over the campaign's results by time bucket (from the campaign's creation to
    now): failures, time-outs and lease expiries; per worker, trials per second and mean
    latency (ms); and the last activity."""
    w = max(1.0, math.ceil((end - start).total_seconds() / buckets))
    e = _epoch(conn, "recorded_at")
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
        newest = _time(newest)
        if newest is not None and (last is None or newest > last):
            last = newest
        # every bucket with results is a point (zero faults is worth seeing)
        faults.append((t, "time-outs" if timeout else "failures", float(n * (status == "failed"))))
        if status == "succeeded":
            acc = per.setdefault(str(worker), {}).setdefault(t, [0.0, 0.0])
            acc[0] += float(n)
            acc[1] += float(n) * (float("nan") if lat is None else float(lat))
    ea = _epoch(conn, "at")
    for b, n in conn.execute(
        text(
            f"SELECT floor({ea} / :w), count(*) FROM trial_event_log WHERE campaign = :c "
            f"GROUP BY floor({ea} / :w)"
        ),
        {"c": campaign, "w": w},
    ):
        faults.append((float(b) * w, "lease expiries", float(n)))
    series = _pivot(faults)
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


def _table_costs(
    conn: Connection, campaign: str, stride: int, seqs: np.ndarray, arms: list[dict[str, Any]]
) -> np.ndarray | None:
    """Every arm's cost on each sampled round of a ``table`` campaign (rows follow ``seqs``)."""
    from tasks.kinds.table import arm_key

    keys = [arm_key(a["arm"]) for a in arms]
    by_seq = {
        int(s): _json(v)
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
