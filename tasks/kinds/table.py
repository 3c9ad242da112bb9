"""Trial kind ``table``: replay a full-information cost table through the service.

Spec ``{"costs": {arm_key: cost, ...}}`` holds every arm's cost on the instance (``arm_key`` is
:func:`arm_key` of the arm); ``run`` returns the chosen arm's. Reports then draw exact
counterfactuals (every arm's cost is known), not off-policy estimates.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.errors import InputError, finite_number
from tasks.kinds.base import KindExample, Outcome, TrialKind

MAX_ARMS = 10_000


def arm_key(arm: dict[str, Any]) -> str:
    """The canonical key of an arm in a spec's ``costs`` (sorted compact JSON)."""
    return json.dumps(arm, sort_keys=True, separators=(",", ":"))


class TableKind(TrialKind):
    """Stateless; ``run`` does no work beyond a lookup."""

    name = "table"

    def example(self) -> KindExample:
        arms = [{"omega": 1.0}, {"omega": 1.5}]
        return KindExample(arms, {"costs": {arm_key(a): 10.0 + i for i, a in enumerate(arms)}})

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        costs = spec.get("costs")
        if not isinstance(costs, dict) or not costs:
            raise InputError("costs", "must be a non-empty object of arm key -> cost")
        if len(costs) > MAX_ARMS:
            raise InputError("costs", f"holds {len(costs)} arms; at most {MAX_ARMS}")
        out: dict[str, float] = {}
        for k, v in costs.items():
            cost = finite_number(v, f"costs[{k}]")
            if cost < 0:
                raise InputError(f"costs[{k}]", f"must be >= 0, got {v}")
            out[str(k)] = cost
        return {"costs": out}

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        key = arm_key(arm)
        cost = spec["costs"].get(key)
        if cost is None:
            raise InputError("costs", f"has no cost for arm {key}")
        return Outcome(cost=float(cost), device="cpu")
