"""Replay a full-information cost table through the service: a ``table`` campaign whose
instance specs carry every arm's cost, so reports show exact counterfactuals."""

from __future__ import annotations

import re
from typing import Any

from app.offline.tables import CostTable
from tasks.kinds.table import arm_key

_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


def table_arms(table: CostTable) -> list[dict[str, Any]]:
    """Arm dicts of a table: ``{key: value}`` where every arm name reads ``key=value`` with the
    same key (e.g. ``omega=1.05``), else ``{"x": v}`` or ``{"x0": .., "x1": ..}``."""
    pos = table.arm_positions()
    keys = {m.group(1) for n in table.arm_names if (m := _NAMED.match(n))}
    if pos.shape[1] == 1:
        if len(keys) == 1 and len(table.arm_names) == table.K:
            key = keys.pop()
            # The names' own digits ("omega=1.55", not 1.5499999999999998) when they agree.
            named = [_number(n.split("=", 1)[1]) for n in table.arm_names]
            if all(
                v is not None and abs(v - p) <= 1e-9 * max(1.0, abs(p))
                for v, p in zip(named, pos[:, 0], strict=True)
            ):
                return [{key: v} for v in named]
            return [{key: float(v)} for v in pos[:, 0]]
        return [{"x": float(v)} for v in pos[:, 0]]
    return [{f"x{j}": float(v) for j, v in enumerate(row)} for row in pos]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def create_table_campaign(client: Any, name: str, table: CostTable, **kw: Any) -> Any:
    """A ``table`` campaign with the table's arms and context names (``kw`` as for
    ``Client.create_campaign``: policy, seed, max_in_flight ...)."""
    features = table.context_names or [f"c{j}" for j in range(table.contexts.shape[1])]
    return client.create_campaign(name, "table", table_arms(table), context_features=features, **kw)


def submit_table(camp: Any, table: CostTable, chunk: int = 1000) -> list[int]:
    """Submit every row of the table in order (one transaction per ``chunk`` rows)."""
    arms = table_arms(table)
    keys = [arm_key(a) for a in arms]
    features = table.context_names or [f"c{j}" for j in range(table.contexts.shape[1])]
    ids: list[int] = []
    for lo in range(0, table.T, chunk):
        items = [
            (
                None,
                dict(zip(features, map(float, table.contexts[t]), strict=True)),
                {"costs": dict(zip(keys, map(float, table.costs[t]), strict=True))},
            )
            for t in range(lo, min(lo + chunk, table.T))
        ]
        ids += camp.submit_many(items)
    return ids
