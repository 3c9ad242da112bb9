"""A result's cost as a campaign's policy learns it (``policy_config.cost_unit``): the same
conversion for the scheduler's live updates, its rebuilds from logged results and the report's
copy of the policy. Pure."""

from __future__ import annotations

from typing import Any

from tasks.kinds import get_kind


def learnt_cost(
    kind: str, unit: str | None, cost: float | None, metrics: dict[str, Any] | None
) -> float:
    """``cost`` in ``unit`` (None: as reported), converted by trial kind ``kind`` from the
    result's ``metrics``; ``ValueError`` when they cannot tell."""
    if unit is None:
        return float(cost or 0.0)
    return get_kind(kind).policy_cost(float(cost or 0.0), metrics or {}, unit)
