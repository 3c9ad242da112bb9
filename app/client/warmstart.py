"""Warm start: a new campaign's policy learns first from earlier campaigns' results."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.client import store
from app.contexts import context_vector
from app.policies.base import Policy
from models import Campaign
from tasks.errors import InputError


def warm_state(
    session: Session, new: Campaign, policy: Policy, sources: list[str]
) -> dict[str, Any]:
    """Replay the applied results of ``sources`` into ``policy``; return its state.

    Sources must be of the same kind and declare the same context features; arms are matched
    by value, so a source with a different arm set contributes only the arms both share.
    """
    new_arms = {_key(a): i for i, a in enumerate(store.arm_values(session, new.id))}
    if not new_arms:
        new_arms = {_key(a.value): a.index for a in new.arms}
    features = list(new.context_features)
    for j, name in enumerate(sources):
        src = store.campaign_named(session, name)
        if src is None:
            raise InputError(f"warm_start_from[{j}]", f"no campaign named {name!r}")
        if src.kind != new.kind:
            raise InputError(
                f"warm_start_from[{j}]", f"is a {src.kind!r} campaign, not {new.kind!r}"
            )
        if list(src.context_features) != features:
            raise InputError(
                f"warm_start_from[{j}]",
                f"has features {src.context_features}, this campaign {features}",
            )
        for cost, arm_value, context, quality in store.applied_results(session, src.id):
            idx = new_arms.get(_key(arm_value))
            if idx is not None:
                policy.update(context_vector(context, features), idx, float(cost), quality)
    return policy.get_state()


def _key(value: dict[str, Any]) -> str:
    return repr(sorted(value.items()))
