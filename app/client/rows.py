"""Decoding rows read back from the database (JSON columns are text on SQLite)."""

from __future__ import annotations

import json
from typing import Any


def json_value(v: Any) -> Any:
    """A JSON column's value: decoded when the driver handed back text."""
    return json.loads(v) if isinstance(v, str | bytes) else v


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``trial_results`` row with its JSON columns decoded and ``converged`` a bool."""
    for key in ("context", "arm"):
        row[key] = json_value(row.get(key))
    if row.get("converged") is not None:
        row["converged"] = bool(row["converged"])
    return row
