"""The summary table on top of a report or a dashboard page."""

from __future__ import annotations

import math
from typing import Any

from app.report.data import ReportData
from app.report.estimates import MIN_PLAYS, Counterfactual, counterfactuals


def _f(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def summary(data: ReportData, cf: Counterfactual | None = None) -> dict[str, Any]:
    """Counts, success rate, mean cost and the estimated speed-up over the baseline arm (its
    mean cost over the campaign's mean cost, with a 95% interval; exact for tables). Where
    the data does not support an estimate the number is None and ``notes`` says why and
    what would make it estimable."""
    cf = cf or counterfactuals(data)
    trials = sum(data.counts.values())
    ok, failed = data.counts.get("succeeded", 0), data.counts.get("failed", 0)
    mean = data.total_cost / data.n_succeeded if data.n_succeeded else float("nan")
    base = data.baseline_arm()
    have = bool(data.arms) and len(cf.terms) > 0
    base_ok = have and cf.enough(base)
    base_mean = float(cf.mean()[base]) if base_ok else float("nan")
    lo, hi = cf.ci(base) if base_ok else (float("nan"), float("nan"))
    best = cf.best_fixed() if have else None
    b_lo, b_hi = cf.ci(best) if best is not None else (float("nan"), float("nan"))
    speedup = base_mean / mean if mean > 0 else float("nan")
    notes = []
    if have and not base_ok:
        plays = int(cf.plays[base]) if cf.plays is not None else 0
        notes.append(
            f"not enough data for the speed-up: the baseline arm {data.arm_labels[base]} was "
            f"played {plays} time(s) and an estimate needs {MIN_PLAYS}; "
            f"policy_config={{'holdout': {{'arm': {base}, 'share': 0.05}}}} plays it on 5% "
            "of decisions so that it can be measured"
        )
    if have and best is None:
        notes.append(f"not enough data for a best fixed arm: no arm was played {MIN_PLAYS} times")
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
        "baseline_interval": [_f(lo), _f(hi)],
        "speedup_over_baseline": _f(speedup),
        "speedup_interval": [_f(lo / mean), _f(hi / mean)] if mean > 0 else [None, None],
        "best_fixed_arm": data.arm_labels[best] if best is not None else None,
        "best_fixed_mean_cost": _f(float(cf.mean()[best])) if best is not None else None,
        "best_fixed_interval": [_f(b_lo), _f(b_hi)],
        "estimates": "exact (full-information table)"
        if cf.exact
        else "doubly robust (OPE), bootstrap 95% intervals",
        "notes": notes,
        "sampled_rounds": int(len(data.rounds["seq"])),
        "last_activity": data.last_activity.isoformat(timespec="seconds")
        if data.last_activity
        else None,
    }
