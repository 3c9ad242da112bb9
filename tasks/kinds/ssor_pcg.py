"""Trial kind ``ssor-pcg``: conjugate gradients preconditioned by SSOR(omega), natural order.

Arm ``{"omega": float}`` in (0, 2); cost = CG iterations (the cap when it does not reach
``tol`` on the unpreconditioned relative residual). A CSR system must be symmetric with a
positive diagonal (refused at submit time, naming the field). See ``workers.solvers.pcg`` for
the preconditioner's sweep order, ``tasks.kinds.linear`` for the spec and
``workers.kinds.solvers`` for the run.
"""

from __future__ import annotations

from typing import Any

from tasks.kinds.base import KindExample, TrialKind, warm_by_example
from tasks.kinds.linear import campaign_options, validate_omega_arms, validate_solver_spec


class SsorPcgKind(TrialKind):
    name = "ssor-pcg"

    def warm_up(self) -> None:
        warm_by_example(self)  # loads scipy and the compiled kernels

    def example(self) -> KindExample:
        return KindExample(
            [{"omega": 1.0}, {"omega": 1.5}],
            {"system": {"generator": "laplace2d", "m": 8, "seed": 1}, "tol": 1e-8},
        )

    runner = "workers.kinds.solvers:run_ssor_pcg"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        validate_omega_arms(self.name, arms)

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec, require_spd=True)

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        return campaign_options(settings, ("natural",))
