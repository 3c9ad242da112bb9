"""Campaign arms and names as the client validates them."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tasks.errors import InputError
from tasks.kinds.base import arm_name

NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,199}\Z")
FEATURE_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def expand_arms(
    arms: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """``{"omega": [1.0, 1.5]}`` (a grid over keys) or a list of arm dicts -> list of dicts."""
    if isinstance(arms, Mapping):
        if not arms:
            raise InputError("arms", "must name at least one parameter")
        keys = list(arms)
        for k in keys:
            vals = arms[k]
            if isinstance(vals, str | bytes) or not isinstance(vals, Sequence | np.ndarray):
                raise InputError(f"arms.{k}", "must be a list of values")
            if len(vals) == 0:
                raise InputError(f"arms.{k}", "must list at least one value")
        out = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*arms.values())]
    elif isinstance(arms, Sequence) and not isinstance(arms, str | bytes):
        out = []
        for i, a in enumerate(arms):
            if not isinstance(a, Mapping) or not a:
                raise InputError(f"arms[{i}]", "must be a non-empty mapping of parameters")
            out.append(dict(a))
    else:
        raise InputError("arms", "must be a mapping of parameter -> values, or a list of mappings")
    if not out:
        raise InputError("arms", "must define at least one arm")
    clean: list[dict[str, Any]] = []
    for i, a in enumerate(out):
        try:
            clean.append(json.loads(json.dumps(a, allow_nan=False, default=_np_default)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"arms[{i}]", f"values must be JSON numbers/strings: {exc}") from exc
    names = [arm_name(a) for a in clean]
    if len(set(names)) != len(names):
        raise InputError("arms", "contains duplicate arms")
    return clean


def _np_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")
