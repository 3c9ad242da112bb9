"""Trial kind ``external``: decisions for callers that run their own solves (ask/tell).

No worker runs these trials: the scheduler decides (``Campaign.ask``), the caller solves in
its own process (a PETSc KSP, a scipy loop, an OpenFOAM run) and reports the outcome
(``Campaign.tell``). Instances carry only their context: the spec is empty. Any JSON object
is an arm (``{"omega": 1.4}``, ``{"pc": "gamg", "threshold": 0.05}``).

Options (``create_campaign(..., tell_timeout=, cost=)``): ``tell_timeout`` seconds a decision
waits for its tell before it is abandoned (default 3600; abandoned decisions are no cost to
the policy); ``cost``: what a tell's cost is read from: ``"cost"`` (default: the ``cost``
argument), ``"latency_ms"`` or ``"iterations"``.
"""

from __future__ import annotations

from typing import Any

from tasks.errors import InputError, bounded
from tasks.kinds.base import Outcome, TrialKind
from tasks.wire_fields import MAX_LEASE_SECONDS

DEFAULT_TELL_TIMEOUT = 3600.0
COST_SOURCES = ("cost", "latency_ms", "iterations")


class ExternalKind(TrialKind):
    name = "external"
    external = True

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        if spec:
            key = sorted(spec)[0]
            raise InputError(key, "an external instance has no spec: give only its context")
        return {}

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        timeout = settings.pop("tell_timeout", DEFAULT_TELL_TIMEOUT)
        timeout = bounded(timeout, "tell_timeout", 1.0, MAX_LEASE_SECONDS)
        cost = settings.pop("cost", "cost")
        if cost not in COST_SOURCES:
            raise InputError("cost", f"must be one of {', '.join(COST_SOURCES)}, got {cost!r}")
        return {"tell_timeout": timeout, "cost": cost}

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        raise InputError("kind", "external trials are run by the caller (ask/tell), not a worker")
