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
