"""Trial kinds ``noop`` and ``sleep``: for measuring the control plane, not solving anything."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from app.errors import InputError, finite_number
from tasks.kinds.base import Outcome, TrialKind

MAX_SLEEP = 3600.0


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
        if spec.get("kill_worker") is True:  # fault injection: the process dies mid-trial
            out["kill_worker"] = True
        return out

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        if spec.get("kill_worker") is True:
            os.kill(os.getpid(), signal.SIGKILL)
        seconds = float(spec.get("seconds", arm.get("seconds", 0.0)))
        # In slices: a trial running Python code, which a time limit can interrupt on any pool.
        deadline = time.monotonic() + min(seconds, MAX_SLEEP)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return Outcome(cost=seconds, device="cpu")
