"""Trial kind ``sor``: solve one linear system by SOR with the arm's omega.

Natural ordering runs the compiled CPU sweep; ``ordering="multicolor"`` runs colour-parallel
SOR with torch on the worker's device (CUDA when present). Cost: iterations (the cap when SOR
does not converge). See ``tasks.kinds.linear`` for the spec and options and
``workers.kinds.solvers`` for the run.
"""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import KindExample, TrialKind, warm_by_example
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

    def warm_up(self) -> None:
        warm_by_example(self)  # loads scipy and the compiled kernels

    def example(self) -> KindExample:
        return KindExample(
            [{"omega": 1.0}, {"omega": 1.5}],
            {"system": {"generator": "laplace2d", "m": 8, "seed": 1}, "tol": 1e-8},
        )

    runner = "workers.kinds.solvers:run_sor"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        validate_omega_arms(self.name, arms)

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec)

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        return campaign_options(settings, ORDERINGS)
