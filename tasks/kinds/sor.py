"""Trial kind ``sor``: solve one linear system by SOR with the arm's omega.

Natural ordering runs the compiled CPU sweep (sequential by nature: a GPU worker runs it on
its CPU); ``ordering="multicolor"`` runs colour-parallel SOR with torch on the worker's device
(CUDA when present). Cost: iterations (the cap when SOR does not converge). See
``tasks.kinds.linear`` for the spec and options.
"""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import Outcome, TrialKind
from tasks.kinds.linear import (
    ORDERINGS,
    campaign_options,
    check_omega,
    initial_guess,
    outcome,
    prepared,
    validate_omega_arms,
    validate_solver_spec,
)

MAX_ITERS_LIMIT = 10_000_000

__all__ = ["SorKind", "check_omega"]


class SorKind(TrialKind):
    """Spec: system, tol, max_iters, return_solution, x0. Arm: ``{"omega": float}``."""

    name = "sor"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        validate_omega_arms(self.name, arms)

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec)

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        return campaign_options(settings, ORDERINGS)

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        spec = self.validate_spec(spec)
        omega = check_omega(arm.get("omega"), "arm.omega")
        opts = options or {}
        P, b, hit, setup = prepared(spec)
        x0 = initial_guess(spec)
        if opts.get("ordering", "natural") == "multicolor":
            from tasks.solvers.multicolor import multicolor_sor

            res = multicolor_sor(
                P, b, omega, spec["tol"], spec["max_iters"], x0, dtype=opts.get("dtype", "float64")
            )
        else:
            from tasks.solvers.sor import sor

            res = sor(P, b, omega, spec["tol"], spec["max_iters"], x0)
        out = outcome(res, spec, P, setup, hit)
        out.metrics["ordering"] = opts.get("ordering", "natural")
        return out
