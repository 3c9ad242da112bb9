"""Vectors given by a formula on the unit grid, evaluated where they are used (the worker): a
forcing term or right-hand side that would otherwise be computed and uploaded at every step
of a simulation travels as a few numbers.

The grid is the interior of the unit square (cube, interval) with ``m`` points per axis,
spacing ``h = 1 / (m + 1)``, points ``h * (1..m)`` in row-major ("ij") order: the unknowns of
``LinearSystem.generate("laplace2d", m)`` and its 1-D / 3-D siblings. On the wire:
``{"grid_field": "gaussian", "m": m, "center": [c_1..c_d], "width": w, "height": a}``, the
bump ``a * exp(-|x - c|^2 / (2 w^2))``; ``d = len(center)`` (1, 2 or 3), ``n = m ** d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.errors import InputError, finite_number

KEY = "grid_field"
SHAPES = ("gaussian",)
#: the largest grid a field may describe (points), as for the generators' systems
MAX_POINTS = 10**8


def is_field(value: Any) -> bool:
    return isinstance(value, dict) and KEY in value


class GridField:
    """A vector defined by a formula on the unit grid (see the module); immutable."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = validate(spec, None, "grid_field")
        self.n = size(self.spec)

    @classmethod
    def gaussian(
        cls, m: int, center: Sequence[float], width: float, height: float = 1.0
    ) -> GridField:
        """``height * exp(-|x - center|^2 / (2 width^2))`` on the m-per-axis interior grid of
        the unit square (``len(center)`` = 2; 1 or 3 for an interval or a cube)."""
        return cls(
            {
                KEY: "gaussian",
                "m": m,
                "center": [float(c) for c in center],
                "width": width,
                "height": height,
            }
        )

    def to_wire(self) -> dict[str, Any]:
        return dict(self.spec)

    def values(self) -> np.ndarray:
        return evaluate(self.spec)

    def __repr__(self) -> str:
        return f"GridField({self.spec[KEY]}, m={self.spec['m']}, n={self.n})"


def size(spec: dict[str, Any]) -> int:
    """Entries of a validated field."""
    return int(spec["m"]) ** len(spec["center"])


def validate(value: Any, n: int | None, field: str) -> dict[str, Any]:
    """The normalized wire form of a field of ``n`` entries (any when None), or
    ``InputError`` naming the field."""
    if not isinstance(value, dict):
        raise InputError(field, "must be an object")
    shape = value.get(KEY)
    if shape not in SHAPES:
        raise InputError(f"{field}.{KEY}", f"unknown field {shape!r}; allowed: {', '.join(SHAPES)}")
    unknown = sorted(set(value) - {KEY, "m", "center", "width", "height"})
    if unknown:
        raise InputError(f"{field}.{unknown[0]}", "unknown key")
    m = value.get("m")
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise InputError(f"{field}.m", f"must be an integer >= 1, got {m!r}")
    center = value.get("center")
    if not isinstance(center, list | tuple) or not 1 <= len(center) <= 3:
        raise InputError(f"{field}.center", "must be 1 to 3 coordinates (the grid's dimension)")
    out: dict[str, Any] = {
        KEY: shape,
        "m": int(m),
        "center": [finite_number(c, f"{field}.center") for c in center],
        "width": finite_number(value.get("width"), f"{field}.width"),
        "height": finite_number(value.get("height", 1.0), f"{field}.height"),
    }
    if not out["width"] > 0:
        raise InputError(f"{field}.width", f"must be > 0, got {out['width']!r}")
    points = size(out)
    if points > MAX_POINTS:
        raise InputError(f"{field}.m", f"{points} points is over the limit of {MAX_POINTS}")
    if n is not None and points != n:
        raise InputError(field, f"describes {points} entries (m ** {len(center)}), not {n}")
    return out


def evaluate(spec: dict[str, Any]) -> np.ndarray:
    """The values of a validated field (a new float64 array)."""
    m, center = int(spec["m"]), spec["center"]
    g = np.arange(1, m + 1, dtype=np.float64) / (m + 1)
    # exp(-|x-c|^2 / 2w^2) factors over the axes: d small exponentials, one outer product
    parts = [np.exp(-((g - c) ** 2) / (2.0 * spec["width"] ** 2)) for c in center]
    out = parts[0] * float(spec["height"])
    for p in parts[1:]:
        out = np.multiply.outer(out, p)
    return np.ascontiguousarray(out, dtype=np.float64).ravel()
