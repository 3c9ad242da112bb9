"""Trial kind ``sor``: solve one linear system by SOR with the arm's omega."""

from __future__ import annotations

import math
from typing import Any

from app.errors import InputError
from app.linsys import build_system
from tasks.kinds.base import Outcome, TrialKind

MAX_ITERS_LIMIT = 10_000_000


def check_omega(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(field, f"must be a finite number, got {value!r}")
    if not 0.0 < float(value) < 2.0:
        raise InputError(field, f"must be in the open interval (0, 2), got {value}")
    return float(value)


class SorKind(TrialKind):
    """Spec: ``{"system": <csr or generator spec>, "tol": float, "max_iters": int,
    "return_solution": bool}``. Arm: ``{"omega": float}``. Cost: iterations (the cap when
    SOR does not converge)."""

    name = "sor"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        for i, arm in enumerate(arms):
            if set(arm) != {"omega"}:
                raise InputError(f"arms[{i}]", f"sor arms take exactly 'omega', got {sorted(arm)}")
            check_omega(arm["omega"], f"arms[{i}].omega")

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        tol = spec.get("tol", 1e-8)
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol < 1:
            raise InputError("tol", f"must be a number in (0, 1), got {tol!r}")
        max_iters = spec.get("max_iters", 10_000)
        if (
            isinstance(max_iters, bool)
            or not isinstance(max_iters, int)
            or not 1 <= max_iters <= MAX_ITERS_LIMIT
        ):
            raise InputError("max_iters", f"must be an integer in 1..{MAX_ITERS_LIMIT}")
        system = spec.get("system")
        build_system(system if isinstance(system, dict) else {}, "system")  # raises InputError
        return {
            "system": system,
            "tol": float(tol),
            "max_iters": max_iters,
            "return_solution": bool(spec.get("return_solution", False)),
        }

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        from tasks.kinds.sor_solver import sor  # torch: on workers only

        spec = self.validate_spec(spec)
        omega = check_omega(arm.get("omega"), "arm.omega")
        A, b = build_system(spec["system"])
        res = sor(A, b, omega, spec["tol"], spec["max_iters"])
        # A non-converged run costs the cap: the policy must learn to avoid it.
        cost = float(res.iterations if res.converged else spec["max_iters"])
        return Outcome(
            cost=cost,
            iterations=res.iterations,
            converged=res.converged,
            residual=res.residual if math.isfinite(res.residual) else None,
            device=res.device,
            metrics={"diverged": res.diverged, "n": int(A.shape[0])},
            outputs={"x": res.x.tolist()} if spec["return_solution"] else None,
        )
