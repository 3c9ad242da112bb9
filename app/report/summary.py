"""The summary table on top of a report or a dashboard page."""

from __future__ import annotations

import math
from typing import Any

from app.report.data import ReportData
from app.report.estimates import Counterfactual, counterfactuals


def _f(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def summary(data: ReportData, cf: Counterfactual | None = None) -> dict[str, Any]:
    """Counts, success rate, mean cost and the estimated speed-up over the baseline arm (its
    mean cost over the campaign's mean cost, with a 95% interval; exact for tables)."""
    cf = cf or counterfactuals(data)
    trials = sum(data.counts.values())
    ok, failed = data.counts.get("succeeded", 0), data.counts.get("failed", 0)
    mean = data.total_cost / data.n_succeeded if data.n_succeeded else float("nan")
    base = data.baseline_arm()
    lo, hi = cf.ci(base) if len(cf.terms) else (float("nan"), float("nan"))
    base_mean = (lo + hi) / 2.0
    best = cf.best_fixed() if len(cf.terms) else None
    speedup = base_mean / mean if mean > 0 else float("nan")
    return {
        "campaign": data.name,
        "kind": data.overview["kind"],
        "policy": data.overview["policy"],
        "policy_version": data.policy_version,
        "policy_updates": int(data.overview["n_updates"] or 0),
        "instances": int(data.overview["n_instances"] or 0),
        "trials": trials,
        "succeeded": ok,
        "failed": failed,
        "open": trials - ok - failed,
        "success_rate": _f(ok / (ok + failed)) if ok + failed else None,
        "mean_cost": _f(mean),
        "baseline_arm": data.arm_labels[base] if data.arms else None,
        "baseline_mean_cost": _f(base_mean),
        "speedup_over_baseline": _f(speedup),
        "speedup_interval": [_f(lo / mean), _f(hi / mean)] if mean > 0 else [None, None],
        "best_fixed_arm": data.arm_labels[best] if best is not None else None,
        "best_fixed_mean_cost": _f(float(cf.mean()[best])) if best is not None else None,
        "estimates": "exact (full-information table)" if cf.exact else "doubly robust (OPE)",
        "sampled_rounds": int(len(data.rounds["seq"])),
        "last_activity": data.last_activity.isoformat(timespec="seconds")
        if data.last_activity
        else None,
    }
