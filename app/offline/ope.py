"""Off-policy evaluation from logged decisions: what would another policy's mean cost have been?

Estimators (Dudik et al. 2011): IPS, self-normalized IPS, and doubly robust with a per-arm
ridge cost model fitted on the log. The target policy is run over the logged contexts in
order and learns only from the rounds where it agrees with the log (the replay method of
Li et al. 2011), so a learning policy is evaluated as it would have learnt. Confidence
intervals are normal approximations (1.96 standard errors of the per-round terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.policies.base import Policy
from app.policies.ridge import PerArmRidge, feature_map

MIN_TRUSTED_PROPENSITY = 0.01


@dataclass
class LoggedRound:
    context: np.ndarray
    arm: int
    propensity: float
    cost: float


def evaluate(
    target: Policy, log: list[LoggedRound], keys: list[int] | None = None
) -> dict[str, Any]:
    if not log:
        raise ValueError("no logged rounds with a cost to evaluate")
    K = target.n_arms
    d = len(log[0].context)
    model = PerArmRidge(K, max(d, 1), feature_map("chebyshev", 2), lam=1.0)
    for r in log:
        model.add(r.context if d else np.zeros(1), r.arm, r.cost)
    ips, dr, w_all = [], [], []
    matches = 0
    for t, r in enumerate(log):
        key = keys[t] if keys else t
        pi = target.probabilities(r.context, key)
        w = pi[r.arm] / max(r.propensity, 1e-12)
        qhat, _w, _f = model.predict(r.context if d else np.zeros(1))
        ips.append(w * r.cost)
        dr.append(float(pi @ qhat) + w * (r.cost - qhat[r.arm]))
        w_all.append(w)
        if target.choose(r.context, key).arm == r.arm:
            target.update(r.context, r.arm, r.cost)
            matches += 1
    ips_a, dr_a, w_a = np.array(ips), np.array(dr), np.array(w_all)
    n = len(log)
    snips = float(ips_a.sum() / max(w_a.sum(), 1e-12))
    ess = float(w_a.sum() ** 2 / max((w_a**2).sum(), 1e-12))
    min_p = float(min(r.propensity for r in log))
    se = lambda a: float(a.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")  # noqa: E731
    # Delta-method standard error of the ratio estimator.
    sn_terms = w_a * (np.array([r.cost for r in log]) - snips) / max(w_a.mean(), 1e-12)
    warnings = []
    if min_p < MIN_TRUSTED_PROPENSITY:
        warnings.append(
            f"smallest logged propensity is {min_p:.2g} (< "
            f"{MIN_TRUSTED_PROPENSITY}): IPS weights up to {w_a.max():.0f}x; "
            "estimates are not to be trusted"
        )
    if ess < 0.05 * n:
        warnings.append(
            f"effective sample size {ess:.0f} of {n}: the target policy rarely "
            "agrees with the logging policy; intervals are wide"
        )
    return {
        "rounds": n,
        "logged_mean_cost": float(np.mean([r.cost for r in log])),
        "ips": float(ips_a.mean()),
        "ips_ci": _ci(float(ips_a.mean()), se(ips_a)),
        "snips": snips,
        "snips_ci": _ci(snips, se(sn_terms)),
        "dr": float(dr_a.mean()),
        "dr_ci": _ci(float(dr_a.mean()), se(dr_a)),
        "effective_sample_size": ess,
        "min_propensity": min_p,
        "replay_matches": matches,
        "trustworthy": not warnings,
        "warnings": warnings,
    }


def _ci(mean: float, se: float) -> list[float]:
    return [mean - 1.96 * se, mean + 1.96 * se]


def load_campaign_log(session: Any, campaign: str) -> tuple[Any, list[LoggedRound], list[int]]:
    """(campaign row, logged rounds in result order, instance seqs) of succeeded trials."""
    from sqlalchemy import select

    from app.contexts import context_vector
    from models import Campaign, Instance, Result, Trial
    from tasks.errors import NotFoundError

    camp = session.scalar(select(Campaign).where(Campaign.name == campaign))
    if camp is None:
        raise NotFoundError(f"no campaign named {campaign!r}")
    rows = session.execute(
        select(Instance.context, Instance.seq, Trial.arm_index, Trial.propensity, Result.cost)
        .join(Trial, Trial.id == Result.trial_id)
        .join(Instance, Instance.id == Trial.instance_id)
        .where(Result.campaign_id == camp.id, Result.applied.is_(True))
        .order_by(Result.id)
    ).all()
    feats = list(camp.context_features)
    log = [
        LoggedRound(context_vector(c, feats), int(a), float(p), float(cost))
        for c, _s, a, p, cost in rows
    ]
    return camp, log, [int(s) for _c, s, _a, _p, _cost in rows]
