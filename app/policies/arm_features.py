"""Arms described by parameters (solver configurations: method, preconditioner, omega, ...)
as numbers a model can share across: what a solve with one configuration shows says something
about the configurations that share its method, its preconditioner or a nearby parameter.

Pure functions; the encoding depends only on the arms' values, so a restored policy rebuilds
the same one."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def arm_features(values: Sequence[Mapping[str, Any]] | None) -> np.ndarray:
    """A K x q encoding of ``values`` (one parameter mapping per arm; q may be 0).

    Per key: a key whose values are all numbers becomes its value scaled to [0, 1] over the
    arms (on a log scale where all are positive and span a factor of 10 or more) and that
    value squared (a parameter with a best value inside its range, as SOR's omega, is a
    curve, not a line), both 0 where an arm lacks the key, plus a column marking the arms
    that have it when not all do; any other key becomes one indicator column per value
    (``method=cg``, ``preconditioner=ilu``). A key with one value throughout says nothing
    and is left out. Columns are in key order, then value order: deterministic."""
    if not values:
        return np.zeros((0, 0))
    K = len(values)
    keys = sorted({str(k) for v in values for k in v})
    cols: list[np.ndarray] = []
    for key in keys:
        present = np.array([key in v for v in values])
        got = [v[key] for v in values if key in v]
        if all(_numeric(x) for x in got):
            nums = np.array([float(x) for x in got])
            if np.ptp(nums) == 0.0:
                if not present.all():
                    cols.append(present.astype(float))
                continue
            if nums.min() > 0 and nums.max() / nums.min() >= 10.0:
                nums = np.log(nums)
            u = (nums - nums.min()) / np.ptp(nums)
            col = np.zeros(K)
            col[present] = u
            cols.extend([col, col**2])
            if not present.all():
                cols.append(present.astype(float))
            continue
        labels = [repr(v[key]) if key in v else None for v in values]
        distinct = sorted({lab for lab in labels if lab is not None})
        if len(distinct) == 1 and present.all():
            continue
        for lab in distinct:
            cols.append(np.array([1.0 if x == lab else 0.0 for x in labels]))
    return np.stack(cols, axis=1) if cols else np.zeros((K, 0))


def parse_arm_label(label: str) -> dict[str, Any]:
    """``method=cg,preconditioner=ssor,omega=1.2`` (a cost table's arm name) as a mapping,
    numbers as floats; a label without ``=`` is one value (a number if it reads as one)
    under the key ``arm``."""
    if "=" not in label:
        try:
            return {"arm": float(label)}
        except ValueError:
            return {"arm": label}
    out: dict[str, Any] = {}
    for part in label.split(","):
        key, _sep, raw = part.partition("=")
        try:
            out[key.strip()] = float(raw)
        except ValueError:
            out[key.strip()] = raw.strip()
    return out
