"""Trial kind ``ssor-pcg``: conjugate gradients preconditioned by SSOR(omega), natural order.

Arm ``{"omega": float}`` in (0, 2); cost = CG iterations (the cap when it does not reach
``tol`` on the unpreconditioned relative residual). A CSR system must be symmetric with a
positive diagonal (refused at submit time, naming the field). See ``tasks.solvers.pcg`` for
the preconditioner's sweep order and ``tasks.kinds.linear`` for the spec.
"""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import Outcome, TrialKind
from tasks.kinds.linear import (
    campaign_options,
    check_omega,
    initial_guess,
    outcome,
    prepared,
    validate_omega_arms,
    validate_solver_spec,
)


class SsorPcgKind(TrialKind):
    name = "ssor-pcg"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        validate_omega_arms(self.name, arms)

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec, require_spd=True)

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        return campaign_options(settings, ("natural",))

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        from tasks.solvers.pcg import ssor_pcg

        spec = self.validate_spec(spec)
        omega = check_omega(arm.get("omega"), "arm.omega")
        P, b, hit, setup = prepared(spec)
        x0 = initial_guess(spec)
        res = ssor_pcg(P, b, omega, spec["tol"], spec["max_iters"], x0)
        return outcome(res, spec, P, setup, hit)
