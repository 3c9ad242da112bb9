"""Trial kind ``scipy-gmres``: restarted GMRES preconditioned by an incomplete LU factorization,
on a 2-D convection-diffusion problem (non-symmetric, so conjugate gradients do not apply).

Spec ``{"m": int, "peclet": float, "angle": float, "shift": float, "tol": float,
"max_iters": int}``: the m x m upwind discretization of -lap(u) + peclet * (cos a, sin a).grad(u)
+ shift * u = 1 on the unit square. Arm ``{"restart": int, "drop_tol": float}``: GMRES's
restart length and ILU's drop tolerance, the two knobs whose best setting moves with the Peclet
number. Campaign option ``cost``: ``"iterations"`` (default; inner iterations, the cap when
GMRES does not converge) or ``"seconds"`` (factorization + solve, the whole wall time).

This module is what the client and the scheduler load: validation and context features only,
no scipy. The solve is in :mod:`banditq_krylov.runner`, imported on workers only.
"""

from __future__ import annotations

import math
from typing import Any

from app import InputError, TrialKind

COSTS = ("iterations", "seconds")


def _number(spec: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InputError(key, f"must be a finite number, got {v!r}")
    if not lo <= v <= hi:
        raise InputError(key, f"must be in [{lo}, {hi}], got {v}")
    return float(v)


def _integer(spec: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(key, f"must be an integer in {lo}..{hi}, got {v!r}")
    return int(v)


class GmresKind(TrialKind):
    """GMRES(restart) + ILU(drop_tol) on convection-diffusion; cost = iterations or seconds."""

    name = "scipy-gmres"
    runner = "banditq_krylov.runner:run"

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(spec) - {"m", "peclet", "angle", "shift", "tol", "max_iters"})
        if unknown:
            raise InputError(
                unknown[0], "unknown key; takes m, peclet, angle, shift, tol, max_iters"
            )
        return {
            "m": _integer(spec, "m", 32, 4, 2000),
            "peclet": _number(spec, "peclet", 0.0, 0.0, 1e6),
            "angle": _number(spec, "angle", 0.0, -10.0, 10.0),
            "shift": _number(spec, "shift", 0.0, 0.0, 1e6),
            "tol": _number(spec, "tol", 1e-8, 1e-14, 0.5),
            "max_iters": _integer(spec, "max_iters", 2000, 1, 1_000_000),
        }

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        for i, arm in enumerate(arms):
            if set(arm) != {"restart", "drop_tol"}:
                raise InputError(
                    f"arms[{i}]", f"takes exactly restart and drop_tol, got {sorted(arm)}"
                )
            try:
                _integer(arm, "restart", 0, 1, 10_000)
                _number(arm, "drop_tol", 0.0, 1e-12, 1.0)
            except InputError as exc:
                raise InputError(f"arms[{i}].{exc.field}", exc.message) from exc

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        cost = settings.pop("cost", "iterations")
        if cost not in COSTS:
            raise InputError("settings.cost", f"must be one of {list(COSTS)}, got {cost!r}")
        return {"cost": cost}

    def context_features(self, spec: dict[str, Any]) -> dict[str, float]:
        return {
            "peclet": spec["peclet"],
            "log_peclet": math.log10(1.0 + spec["peclet"]),
            "m": float(spec["m"]),
            "shift": spec["shift"],
        }

    def arm_label(self, arm: dict[str, Any]) -> str:
        return f"gmres({arm['restart']})+ilu({arm['drop_tol']:g})"
