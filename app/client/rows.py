"""Decoding rows read back from the database (JSON columns are text on SQLite)."""

from __future__ import annotations

from typing import Any

from models.base import json_value


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``trial_results`` row with its JSON columns decoded and ``converged`` a bool."""
    for key in ("context", "arm"):
        row[key] = json_value(row.get(key))
    if row.get("converged") is not None:
        row["converged"] = bool(row["converged"])
    return row


def tidy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One column per context feature and per arm parameter (``ctx.shift``, ``arm.omega``)
    in place of the ``context`` and ``arm`` objects, so that a data frame or a CSV holds
    numbers, not JSON in cells. Columns keep the view's order; a row missing a key has None."""
    ctx_keys: dict[str, None] = {}
    arm_keys: dict[str, None] = {}
    for r in rows:
        ctx_keys.update(dict.fromkeys(r.get("context") or {}))
        arm_keys.update(dict.fromkeys(r.get("arm") or {}))
    out = []
    for r in rows:
        flat: dict[str, Any] = {}
        for k, v in r.items():
            if k == "context":
                ctx = v or {}
                flat.update({f"ctx.{c}": ctx.get(c) for c in ctx_keys})
            elif k == "arm":
                arm = v or {}
                flat.update({f"arm.{a}": arm.get(a) for a in arm_keys})
            else:
                flat[k] = v
        out.append(flat)
    return out
