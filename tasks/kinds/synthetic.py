"""Trial kinds ``noop`` and ``sleep``: for measuring the control plane, not solving anything."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tasks.errors import InputError, finite_number
from tasks.kinds.base import KindExample, Outcome, TrialKind

MAX_SLEEP = 3600.0
#: ``sleep``'s fault injection (``kill_worker``) exists only where this is set to 1: the
#: test suite's processes, never a deployment (any client could otherwise kill workers)
TEST_HOOKS_ENV = "BANDITQ_TEST_HOOKS"


def test_hooks() -> bool:
    return os.environ.get(TEST_HOOKS_ENV) == "1"


def _number(spec: dict[str, Any], key: str, default: float, hi: float) -> float:
    raw = spec.get(key, default)
    v = finite_number(raw, key)
    if not 0 <= v <= hi:
        raise InputError(key, f"must be in 0..{hi}, got {raw}")
    return v


class NoopKind(TrialKind):
    """Returns at once. Spec ``{"cost": float}`` (default 0); the arm's ``cost`` adds to it."""

    name = "noop"

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"cost": _number(spec, "cost", 0.0, 1e300)}

    def example(self) -> KindExample:
        return KindExample([{"cost": 1.0}, {"cost": 2.0}], {"cost": 0.5})

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        extra = arm.get("cost", 0.0)
        extra = float(extra) if isinstance(extra, int | float) else 0.0
        return Outcome(cost=float(spec.get("cost", 0.0)) + extra, device="cpu")


class SleepKind(TrialKind):
    """Sleeps ``seconds`` (spec, else the arm's ``seconds``); cost = seconds slept."""

    name = "sleep"

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "seconds" in spec:
            out["seconds"] = _number(spec, "seconds", 0.0, MAX_SLEEP)
        if "kill_worker" in spec:  # fault injection: the process dies mid-trial
            if not test_hooks():
                raise InputError("kill_worker", f"exists only in test builds ({TEST_HOOKS_ENV}=1)")
            if spec["kill_worker"] is True:
                out["kill_worker"] = True
        return out

    def example(self) -> KindExample:
        return KindExample([{"seconds": 0.0}, {"seconds": 0.01}], {})

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        if spec.get("kill_worker") is True and test_hooks():
            os.kill(os.getpid(), signal.SIGKILL)
        seconds = float(spec.get("seconds", arm.get("seconds", 0.0)))
        # In slices: a trial running Python code, which a time limit can interrupt on any pool.
        deadline = time.monotonic() + min(seconds, MAX_SLEEP)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return Outcome(cost=seconds, device="cpu")
