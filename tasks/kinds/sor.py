"""Trial kind ``sor``: solve one linear system by SOR with the arm's omega.

Natural ordering runs the compiled CPU sweep; ``ordering="multicolor"`` runs colour-parallel
SOR with torch on the worker's device (CUDA when present). Cost: iterations (the cap when SOR
does not converge). See ``tasks.kinds.linear`` for the spec and options and
``workers.kinds.solvers`` for the run.
"""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import TrialKind
from tasks.kinds.linear import (
    ORDERINGS,
    campaign_options,
    check_omega,
    validate_omega_arms,
    validate_solver_spec,
)

MAX_ITERS_LIMIT = 10_000_000

__all__ = ["SorKind", "check_omega"]


class SorKind(TrialKind):
    """Spec: system, tol, max_iters, return_solution, x0. Arm: ``{"omega": float}``."""

    name = "sor"
    runner = "workers.kinds.solvers:run_sor"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        validate_omega_arms(self.name, arms)

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec)

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        return campaign_options(settings, ORDERINGS)
