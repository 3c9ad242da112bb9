"""A plugin as another distribution would write it, against the public contract only
(``from app import ...``). Registered by tests through a dist-info folder (tests/plugins.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from app import Decision, InputError, Outcome, Policy, TrialKind


class CountKind(TrialKind):
    """The minimal kind: a name, validate_spec and run; every other hook is the default."""

    name = "test-count"

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        n = spec.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError("n", f"must be an integer >= 0, got {n!r}")
        return {"n": n}

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        return Outcome(cost=float(spec["n"]) * float(arm["w"]))


class SplitKind(TrialKind):
    """Split by process: the run is a ``runner`` path; context features come from the spec."""

    name = "test-split"
    runner = "tests.plugin_example:run_split"

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"size": float(spec.get("size", 1.0))}

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        for i, arm in enumerate(arms):
            if not isinstance(arm.get("w"), int | float):
                raise InputError(f"arms[{i}].w", "must be a number")

    def context_features(self, spec: dict[str, Any]) -> dict[str, float]:
        return {"size": spec["size"]}

    def arm_label(self, arm: dict[str, Any]) -> str:
        return f"weight {arm['w']}"


def run_split(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    return Outcome(cost=abs(spec["size"] - float(arm["w"])), metrics={"runner": "split"})


class LastArmPolicy(Policy):
    """Always the last arm (a deterministic policy from another distribution)."""

    name = "test-last"

    def choose(self, context: np.ndarray, key: int) -> Decision:
        return Decision(self.n_arms - 1, 1.0, "plugin")

    def _update(self, context: np.ndarray, arm: int, cost: float) -> None:
        return None


def not_a_kind() -> None:
    """Registered as a kind by mistake."""


ENTRY_POINTS = {
    "banditq.kinds": {
        "test-count": "tests.plugin_example:CountKind",
        "test-split": "tests.plugin_example:SplitKind",
        "test-notakind": "tests.plugin_example:not_a_kind",
        "test-missing": "banditq_no_such_module_xyz.kind:Kind",
        "test-extra": "banditq_no_such_module_xyz.gpu:Kind [gpu]",
    },
    "banditq.policies": {"test-last": "tests.plugin_example:LastArmPolicy"},
}
