"""Name -> policy class. ``default`` is the best policy we have measured."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.policies.base import Policy
from app.policies.chebcb import ChebCBPolicy
from app.policies.constrained_ts import ConstrainedTSPolicy
from app.policies.epsilon_greedy import EpsilonGreedyPolicy
from app.policies.fixed import FixedPolicy
from app.policies.guard import ConservativeGuard
from app.policies.lin_ts import LinTSPolicy
from app.policies.linear import LinUCBPolicy
from app.policies.random_policy import RandomPolicy
from app.policies.smooth_ts import SmoothTSPolicy
from app.policies.squarecb import SquareCBPolicy
from app.policies.thompson import ThompsonPolicy
from app.policies.tsallis_inf import TsallisInfPolicy
from app.policies.ucb1 import UCB1Policy

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        FixedPolicy,
        RandomPolicy,
        EpsilonGreedyPolicy,
        UCB1Policy,
        ThompsonPolicy,
        TsallisInfPolicy,
        ChebCBPolicy,
        SquareCBPolicy,
        LinUCBPolicy,
        LinTSPolicy,
        SmoothTSPolicy,
        ConstrainedTSPolicy,
    )
}
#: The best policy measured by benchmarks/relax.py (see the README's numbers).
DEFAULT_POLICY = "smooth-ts"
#: Kinds whose best policy differs: inference needs the quality constraint.
DEFAULT_BY_KIND = {"inference": "constrained-ts"}


def resolve_name(name: str, kind: str | None = None) -> str:
    if name != "default":
        return name
    return DEFAULT_BY_KIND.get(kind or "", DEFAULT_POLICY)


def policy_names() -> list[str]:
    return sorted([*POLICIES, "default"])


def make_policy(
    name: str,
    n_arms: int,
    n_features: int,
    *,
    arms: np.ndarray | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> Policy:
    """Build a policy by name; unknown names and bad config raise ``ValueError``."""
    real = resolve_name(name)
    cls = POLICIES.get(real)
    if cls is None:
        raise ValueError(f"policy={name!r} is unknown; choose one of {', '.join(policy_names())}")
    cfg = dict(config or {})
    guard = cfg.pop("guard", None)
    try:
        policy = cls(n_arms, n_features, arms=arms, seed=seed, **cfg)
    except TypeError as exc:
        raise ValueError(f"policy_config for {real!r} is invalid: {exc}") from exc
    if guard is not None:
        if not isinstance(guard, dict) or set(guard) != {"baseline_arm", "tolerance"}:
            raise ValueError(
                "policy_config.guard must be {'baseline_arm': int, 'tolerance': float}"
            )
        return ConservativeGuard(policy, guard["baseline_arm"], guard["tolerance"])
    return policy
