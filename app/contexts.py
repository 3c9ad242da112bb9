"""Context features: validated dicts on the way in, float vectors for policies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasks.errors import InputError


def validate_context(context: Any, features: list[str], field: str = "context") -> dict[str, float]:
    """The declared features, each a finite real number; nothing missing, nothing extra."""
    if not isinstance(context, dict):
        raise InputError(field, f"must be a mapping of {features}, got {type(context).__name__}")
    missing = [f for f in features if f not in context]
    if missing:
        raise InputError(f"{field}.{missing[0]}", f"missing; declared features are {features}")
    extra = sorted(str(k) for k in context if k not in features)
    if extra:
        raise InputError(f"{field}.{extra[0]}", f"is not a declared feature; declared: {features}")
    out: dict[str, float] = {}
    for name in features:
        v = context[name]
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise InputError(f"{field}.{name}", f"must be a real number, got {v!r}")
        if not math.isfinite(float(v)):
            raise InputError(f"{field}.{name}", f"must be finite, got {v!r}")
        out[name] = float(v)
    return out


def context_vector(context: dict[str, Any], features: list[str]) -> np.ndarray:
    return np.array([float(context[f]) for f in features], dtype=float)
