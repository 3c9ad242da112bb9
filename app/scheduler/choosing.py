"""Choosing: each pending instance's arm from its campaign's policy, with the propensity;
a policy that raises or returns an invalid decision gives way to a uniform choice, and a
campaign whose settings or context fail is marked broken, never the scheduler."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from app.policies.base import Decision
from app.scheduler.core import Core
from app.scheduler.runtime import CampaignRuntime

log = logging.getLogger("banditq.scheduler")

#: (campaign, instance, decision, device class, context used, choice time in ms)
Choice = tuple[CampaignRuntime, Any, Decision, str | None, dict[str, Any], float]


class Chooser:
    """Owned by the scheduler thread; reads the campaigns' policies, never changes them."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def choices(self, todo: list[tuple[CampaignRuntime, Any]]) -> list[Choice]:
        """A decision for each pending instance, in order: a campaign's instances in one
        ``choose_many`` (each instance's own, with its device, where trials are routed);
        a campaign whose settings or context fail here is marked broken and left out."""
        groups: dict[int, list[tuple[CampaignRuntime, Any]]] = {}
        for rt, inst in todo:
            if rt.id not in self.core.broken:
                groups.setdefault(rt.id, []).append((rt, inst))
        made: dict[int, Choice] = {}
        for group in groups.values():
            rt = group[0][0]
            try:
                if rt.auto_device:
                    made.update(self._routed(rt, group))
                    continue
                t0 = time.perf_counter()
                ds = self.choose_many(
                    rt, [inst.seq for _rt, inst in group], [i.context for _r, i in group]
                )
                ms = (time.perf_counter() - t0) * 1000.0 / len(group)
            except Exception as exc:  # this campaign's settings or kind: it alone stops
                self.core.mark_broken(rt.id, f"deciding failed: {type(exc).__name__}: {exc}")
                continue
            for (_rt, inst), d in zip(group, ds, strict=True):
                made[inst.id] = (rt, inst, d, None, inst.context, ms)
        return [made[inst.id] for _rt, inst in todo if inst.id in made]

    def _routed(
        self, rt: CampaignRuntime, group: list[tuple[CampaignRuntime, Any]]
    ) -> dict[int, Choice]:
        """Decisions for a campaign whose trials go to a device class: each instance routed
        (its device's features added to its context), then chosen among the arms it allows;
        an instance with no live worker yet waits (the worker's announcement wakes it)."""
        out: dict[int, Choice] = {}
        for _rt, inst in group:
            t0 = time.perf_counter()
            routed = self.core.devices.route(rt, inst.context)
            if routed is None:
                rt.maybe_pending = False
                self.core.hooks.waiting_for_workers()
                continue
            cls, context, allowed = routed
            d = self.choose(rt, inst.seq, context, allowed)
            out[inst.id] = (rt, inst, d, cls, context, (time.perf_counter() - t0) * 1000.0)
        return out

    def choose_many(
        self, rt: CampaignRuntime, seqs: list[int], contexts: list[dict[str, Any]]
    ) -> list[Decision]:
        """The policy's choices for a burst of one campaign's instances (as :meth:`choose`
        would make them one by one, which is also the way out when the policy raises)."""
        if len(seqs) > 1:
            X = np.stack([rt.vector(c) for c in contexts])  # unreadable: its campaign's fault
            try:
                ds = rt.policy.choose_many(X, seqs)
                if len(ds) != len(seqs):
                    raise ValueError(f"{len(ds)} decisions for {len(seqs)} contexts")
                return [checked(d, len(rt.arm_ids), None) for d in ds]
            except Exception as exc:
                log.warning("campaign %s: choose_many raised %s; one by one", rt.name, exc)
        return [self.choose(rt, seq, c) for seq, c in zip(seqs, contexts, strict=True)]

    def choose(
        self,
        rt: CampaignRuntime,
        seq: int,
        context: dict[str, Any],
        allowed: np.ndarray | None = None,
    ) -> Decision:
        """The policy's choice among the ``allowed`` arms (all when None); if the policy
        raises (a bug), a uniform choice with its true propensity, so the campaign and every
        other campaign go on."""
        x = rt.vector(context)  # a context the campaign cannot read is its own failure
        try:
            if allowed is None:
                d = rt.policy.choose(x, key=seq)
            else:
                d = rt.policy.choose_among(x, seq, allowed)
            return checked(d, len(rt.arm_ids), allowed)
        except Exception as exc:
            log.error(
                "campaign %s: policy %r choose raised %s: %s; choosing uniformly",
                rt.name,
                rt.policy_name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            self.core.hooks.policy_error()
            ok = np.ones(len(rt.arm_ids), dtype=bool) if allowed is None else allowed
            choices = np.flatnonzero(ok)
            arm = int(choices[rt.policy.rng(seq).integers(len(choices))])
            return Decision(arm, 1.0 / len(choices), reason="fallback:policy-error")


#: the trials.reason column's length
MAX_REASON = 50
#: a decision's budget in the campaign's cost unit (None) or in the instance's matrix-vector
#: products (a kind whose ``budget_units`` has "matvec" converts it where the trial runs)
BUDGET_UNITS = (None, "matvec")


def checked(d: Any, n_arms: int, allowed: np.ndarray | None) -> Decision:
    """``d`` if it is a valid decision (ValueError naming what is not): an integer arm in
    ``0 <= arm < n_arms`` (and allowed), a propensity in (0, 1], a reason of at most 50
    printable characters."""
    if not isinstance(d, Decision):
        raise ValueError(f"choose returned {type(d).__name__}, not a Decision")
    arm = d.arm
    if isinstance(arm, bool) or not isinstance(arm, int | np.integer) or not 0 <= arm < n_arms:
        raise ValueError(f"arm {arm!r} is not an index in 0..{n_arms - 1}")
    if allowed is not None and not allowed[int(arm)]:
        raise ValueError(f"arm {arm} is not among the arms allowed on this device")
    p = d.propensity
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < float(p) <= 1.0:
        raise ValueError(f"propensity {p!r} is not in (0, 1]")
    reason = d.reason
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable():
        raise ValueError(f"reason {str(reason)[:80]!r} is not a printable string of <= 50")
    budget = d.budget
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not 0.0 < float(budget) < float("inf")
    ):
        raise ValueError(f"budget {budget!r} is not a positive finite number")
    unit = d.budget_unit
    if unit not in BUDGET_UNITS or (unit is not None and budget is None):
        raise ValueError(f"budget_unit {unit!r} is not one of {BUDGET_UNITS} with a budget")
    return Decision(
        int(arm),
        float(p),
        reason=reason,
        budget=None if budget is None else float(budget),
        budget_unit=unit,
    )
