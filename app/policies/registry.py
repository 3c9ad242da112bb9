"""Policies by name, from the ``banditq.policies`` entry points (see :mod:`tasks.plugins`);
``default`` is the best policy we have measured, or the campaign kind's own default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.policies.base import Policy
from app.policies.fallback import FallbackBudget
from app.policies.guard import ConservativeGuard
from app.policies.holdout import Holdout
from tasks.plugins import POLICIES_GROUP, PluginError, load, names

#: The best policy measured by benchmarks/relax.py (see the README's numbers).
DEFAULT_POLICY = "smooth-ts"
#: ``default`` with more context features than smooth-ts's tensor grid takes (its state is
#: (G^d K)^2): a linear Thompson sampler, cheap at any width (benchmarks/policy_speed.py)
WIDE_DEFAULT, WIDE_FEATURES = "lin-ts", 3


def resolve_name(name: str, kind_default: str | None = None, n_features: int = 0) -> str:
    """``default`` -> the kind's default policy (its ``default_policy``), else ours (above
    ``WIDE_FEATURES`` context features: ``WIDE_DEFAULT``)."""
    if name != "default":
        return name
    if kind_default:
        return kind_default
    return WIDE_DEFAULT if n_features > WIDE_FEATURES else DEFAULT_POLICY


def policy_names() -> list[str]:
    return sorted([*names(POLICIES_GROUP), "default"])


def policy_class(name: str) -> type[Policy]:
    """The class registered as ``name`` in ``banditq.policies`` (``PluginError`` on field
    ``policy`` when unknown, failing to import, or not a Policy)."""
    cls = load(POLICIES_GROUP, resolve_name(name))
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise PluginError("policy", f"{name!r} is {cls!r}, not a subclass of app.Policy")
    return cls


#: ``policy_config.cost_unit``: the unit of the costs the policy learns. None: the
#: campaign's own; "matvec": each result's cost divided by one product of its matrix with a
#: vector (the scheduler converts, with the time its kind measured; budgets are then in
#: products too)
COST_UNITS: tuple[str | None, ...] = (None, "matvec")

#: the magnitude any number in a policy_config may have (a policy bounds its own further)
MAX_CONFIG_NUMBER = 1e6
MAX_CONFIG_BYTES = 64 * 1024


def check_config_values(cfg: dict[str, Any], path: str = "policy_config") -> None:
    """Every number in a policy's config finite and at most :data:`MAX_CONFIG_NUMBER` in
    magnitude, the whole at most 64 KiB of JSON: a config can never ask for an allocation
    the host cannot make (ValueError naming the field)."""
    import json

    if len(json.dumps(cfg, default=str)) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is over {MAX_CONFIG_BYTES} bytes of JSON")

    def walk(v: Any, where: str) -> None:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return
        if isinstance(v, int | float):
            if not (abs(v) <= MAX_CONFIG_NUMBER):  # NaN fails this too
                raise ValueError(f"{where}={v!r} is out of range (|x| <= {MAX_CONFIG_NUMBER:g})")
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
            return
        if isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")

    walk(cfg, path)


def make_policy(
    name: str,
    n_arms: int,
    n_features: int,
    *,
    arms: np.ndarray | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    arm_values: Sequence[Mapping[str, Any]] | None = None,
) -> Policy:
    """Build a policy by name; unknown names and bad config raise ``ValueError``.
    ``arm_values``: the arms' parameter mappings, for policies that model arms by their
    parameters (``takes_arm_values``)."""
    real = resolve_name(name, n_features=n_features)
    try:
        cls = policy_class(real)
    except PluginError as exc:
        raise ValueError(exc.message) from exc
    cfg = dict(config or {})
    check_config_values(cfg)
    guard = cfg.pop("guard", None)
    fallback = cfg.pop("fallback", None)
    holdout = cfg.pop("holdout", None)
    cost_unit = cfg.pop("cost_unit", None)
    if cost_unit not in COST_UNITS:
        raise ValueError(
            f"policy_config.cost_unit={cost_unit!r} must be one of {list(COST_UNITS)[1:]} "
            "(or left out: the campaign's cost unit)"
        )
    try:
        if getattr(cls, "takes_arm_values", False):
            cfg["arm_values"] = arm_values
        policy = cls(n_arms, n_features, arms=arms, seed=seed, **cfg)
    except TypeError as exc:
        raise ValueError(f"policy_config for {real!r} is invalid: {exc}") from exc
    if guard is not None:
        if not isinstance(guard, dict) or set(guard) != {"baseline_arm", "tolerance"}:
            raise ValueError(
                "policy_config.guard must be {'baseline_arm': int, 'tolerance': float}"
            )
        policy = ConservativeGuard(policy, guard["baseline_arm"], guard["tolerance"])
    if fallback is not None:
        keys = set(fallback) if isinstance(fallback, dict) else set()
        if not {"arm", "budget"} <= keys <= {"arm", "budget", "level"}:
            raise ValueError(
                "policy_config.fallback must be {'arm': int, 'budget': float} "
                "(and optionally 'level')"
            )
        policy = FallbackBudget(
            policy, fallback["arm"], fallback["budget"], fallback.get("level"), cost_unit
        )
    if holdout is not None:  # outermost: the logged propensity is the whole mixture's
        if not isinstance(holdout, dict) or set(holdout) != {"arm", "share"}:
            raise ValueError("policy_config.holdout must be {'arm': int, 'share': float}")
        policy = Holdout(policy, holdout["arm"], holdout["share"])
    return policy
