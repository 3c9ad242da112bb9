"""Replay evaluation on full-information cost tables: the policy sees only the cost of the
arm it chose, instances in file order.

With ``policy_config.fallback`` a decision's budget is honoured as a worker honours it: an
arm whose cost in the table exceeds its budget is stopped there and the fallback arm solves,
so the instance costs the budget plus the fallback's cost in that row, and the policy learns
that cost as a censored observation (what the scheduler does with such a trial's report). A
budget in matrix-vector products is converted with the row's product time
(``matvec_seconds``), as the worker converts it with the one it measures; with
``policy_config.cost_unit="matvec"`` the policy learns each cost divided by that time, as the
scheduler gives it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.offline.tables import CostTable
from app.policies.arm_features import parse_arm_label
from app.policies.fallback import fallback_arm
from app.policies.registry import make_policy


@dataclass
class ReplayRun:
    policy: str
    chosen: np.ndarray
    costs: np.ndarray
    propensities: np.ndarray
    seconds: float


def replay_once(
    table: CostTable,
    policy: str,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    warm: CostTable | None = None,
    unordered: bool = False,
    matvec_seconds: np.ndarray | None = None,
) -> ReplayRun:
    """One replay; ``unordered``: the arms are not numbers on an axis (solver
    configurations), so the policy gets no positions; ``matvec_seconds``: per row, one
    matrix-vector product's time (needed for budgets in products)."""
    pol = make_policy(
        policy,
        table.K,
        table.contexts.shape[1],
        arms=None if unordered else table.arm_positions(),
        seed=seed,
        config=config,
        arm_values=[parse_arm_label(n) for n in table.arm_names] if table.arm_names else None,
    )
    if warm is not None:  # earlier campaigns' logged bandit feedback (one arm per instance)
        wrng = np.random.default_rng(seed + 991)
        for t in range(warm.T):
            a = int(wrng.integers(warm.K))
            pol.update(warm.contexts[t], a, float(warm.costs[t, a]))
    chosen = np.zeros(table.T, dtype=np.int64)
    props = np.zeros(table.T)
    paid = np.zeros(table.T)
    fb = fallback_arm(config)
    in_products = (config or {}).get("cost_unit") == "matvec"
    if in_products and matvec_seconds is None:
        raise ValueError("costs in products need the rows' matvec_seconds")
    t0 = time.perf_counter()
    for t in range(table.T):
        d = pol.choose(table.contexts[t], key=t)
        chosen[t] = d.arm
        props[t] = d.propensity
        cost = float(table.costs[t, d.arm])
        budget = d.budget
        if budget is not None and d.budget_unit == "matvec":
            if matvec_seconds is None:
                raise ValueError("a budget in products needs the rows' matvec_seconds")
            budget *= float(matvec_seconds[t])
        unit = float(matvec_seconds[t]) if in_products and matvec_seconds is not None else 1.0
        if fb is not None and budget is not None and cost > budget:
            paid[t] = budget + float(table.costs[t, fb])
            pol.update_censored(table.contexts[t], d.arm, float(paid[t]) / unit)
        else:
            paid[t] = cost
            pol.update(table.contexts[t], d.arm, cost / unit)
    secs = time.perf_counter() - t0
    return ReplayRun(pol.name, chosen, paid, props, secs)


def summarize(table: CostTable, runs: list[ReplayRun]) -> dict[str, Any]:
    oracle = table.costs.min(axis=1)
    best_fixed = table.costs.mean(axis=0).min()
    n10 = max(1, table.T // 10)
    means = [r.costs.mean() for r in runs]
    firsts = [r.costs[:n10].mean() / oracle[:n10].mean() for r in runs]
    mean_cost = float(np.mean(means))
    return {
        "policy": runs[0].policy,
        "T": table.T,
        "K": table.K,
        "repeats": len(runs),
        "mean_cost": mean_cost,
        "oracle_mean_cost": float(oracle.mean()),
        "best_fixed_mean_cost": float(best_fixed),
        "ratio_to_oracle": mean_cost / float(oracle.mean()),
        "ratio_to_best_fixed": mean_cost / float(best_fixed),
        "first_10pct_ratio": float(np.mean(firsts)),
        "ratio_to_oracle_std": float(np.std([m / oracle.mean() for m in means])),
        "seconds": float(sum(r.seconds for r in runs)),
    }


def replay(
    table: CostTable,
    policy: str,
    seed: int = 0,
    repeats: int = 1,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    runs = [replay_once(table, policy, seed + i, config) for i in range(repeats)]
    return summarize(table, runs)
