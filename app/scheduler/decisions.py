"""Decisions: for every campaign with room in flight and pending instances, ask its policy for
an arm (with the propensity), write the trial rows, and publish them after the commit."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.policies.base import Decision
from app.scheduler.core import Core, now
from app.scheduler.errors import RETRYABLE
from app.scheduler.outbox import Outbox
from app.scheduler.runtime import CampaignRuntime
from models.states import TrialState
from tasks.messages import TrialMessage

log = logging.getLogger("banditq.scheduler")

#: (campaign, instance, decision, device class, context used, choice time in ms)
Choice = tuple[CampaignRuntime, Any, Decision, str | None, dict[str, Any], float]


class Decider:
    """Owned by the scheduler thread. ``on_failure(exc)`` is called when a decision
    transaction fails (the scheduler drops its in-memory state and pauses)."""

    def __init__(
        self, core: Core, outbox: Outbox, chunk: int, on_failure: Callable[[Exception], None]
    ) -> None:
        self.core = core
        self.outbox = outbox
        self.chunk = chunk
        self.on_failure = on_failure

    def wanted(self) -> bool:
        return bool(self.outbox.unmarked or self.outbox.poisoned) or self.core.wants_room()

    def decide_and_publish(self) -> int:
        """Decide in chunks of ``chunk`` (each commits on its own: a decision waits only for
        its chunk's commit, whose latency grows with its rows), then publish them all."""
        messages: list[TrialMessage] = []
        todo: list[tuple[CampaignRuntime, Any]] | None = None
        lo = 0
        # The pending read shares the first chunk's transaction: a lone instance (a solve in
        # a simulation loop) is decided in one round of BEGIN .. COMMIT.
        while todo is None or lo < len(todo):
            try:
                with self.core.DecisionSession() as session, session.begin():
                    if todo is None:
                        self.outbox.flush_marks(session)
                        todo = self._pending(session)
                    part = todo[lo : lo + self.chunk]
                    decided = self._decide(session, part) if part else []
                    t_commit = time.perf_counter()
                committed = time.perf_counter()
            except RETRYABLE as exc:
                self.outbox.publish(messages)  # the chunks committed before the failure
                self.on_failure(exc)
                return len(messages)
            except Exception as exc:
                if todo is None:
                    raise  # the pending read itself: not one campaign's doing
                # A statement failing on one campaign's values: decide campaign by campaign
                # and stop only the one that still fails.
                log.warning("a decision chunk failed (%s); deciding campaign by campaign", exc)
                self.core.forget()
                decided = self._decide_apart(todo[lo : lo + self.chunk])
                t_commit = committed = time.perf_counter()
            lo += self.chunk
            commit_ms = (committed - t_commit) * 1000.0
            self.core.hooks.decided(len(decided), [ms for _m, ms in decided], commit_ms)
            messages.extend(m for m, _ in decided if m is not None)
        # Published together after the last chunk: publishing wakes the broker and workers,
        # which on a shared host would preempt the choices of the next chunk.
        self.outbox.publish(messages)
        return len(messages)

    def _decide_apart(
        self, part: list[tuple[CampaignRuntime, Any]]
    ) -> list[tuple[TrialMessage | None, float]]:
        """``part`` decided one campaign per transaction; a campaign whose transaction fails
        for a reason other than the database's state is marked broken."""
        groups: dict[int, list[tuple[CampaignRuntime, Any]]] = {}
        for rt, inst in part:
            groups.setdefault(rt.id, []).append((rt, inst))
        out: list[tuple[TrialMessage | None, float]] = []
        for cid, group in groups.items():
            try:
                with self.core.DecisionSession() as session, session.begin():
                    decided = self._decide(session, group)
            except RETRYABLE:
                raise
            except Exception as exc:
                self.core.mark_broken(cid, f"recording a decision failed: {exc}")
                continue
            out.extend(decided)
        return out

    def _pending(self, session: Session) -> list[tuple[CampaignRuntime, Any]]:
        """Pending instances (oldest first) of every campaign with room in flight. Only the
        scheduler moves an instance out of ``pending``, so they stay pending until decided."""
        out: list[tuple[CampaignRuntime, Any]] = []
        for rt in list(self.core.runtimes.values()):
            room = rt.max_in_flight - rt.in_flight
            if room <= 0 or not rt.maybe_pending:
                continue
            pending = self.core.store.pending_instances(session, rt.id, room)
            if len(pending) < room:
                rt.maybe_pending = False
            out.extend((rt, inst) for inst in pending)
        return out

    def _decide(
        self, session: Session, todo: list[tuple[CampaignRuntime, Any]]
    ) -> list[tuple[TrialMessage | None, float]]:
        """Choose an arm for each instance; trial rows and status updates go to ``session``.
        Returns (message, choice time in ms) per decision; no message for an external trial
        (its asker, woken in this transaction, runs it: it is running from now on, its
        lease the campaign's tell timeout)."""
        out: list[tuple[TrialMessage | None, float]] = []
        trials = []
        asked: list[str] = []
        contexts: list[dict[str, Any]] = []
        for rt, inst, d, cls, context, choose_ms in self._choices(todo):
            if rt.id in self.core.broken:  # its kind's message hook failed just now
                continue
            try:
                tid = str(uuid.uuid4())
                msg = (
                    None
                    if rt.external
                    else rt.message(
                        tid, 1, inst.spec, d.arm, d.reason, inst.seq, cls, inst.id, d.budget
                    )
                )
            except Exception as exc:  # this campaign's kind: it alone stops
                self.core.mark_broken(rt.id, f"deciding failed: {type(exc).__name__}: {exc}")
                continue
            if context != inst.context:
                contexts.append({"id": inst.id, "context": context})
            at = now()
            trials.append(
                {
                    "uuid": tid,
                    "campaign_id": rt.id,
                    "instance_id": inst.id,
                    "arm_id": rt.arm_ids[d.arm],
                    "arm_index": d.arm,
                    "propensity": float(d.propensity),
                    "policy_name": rt.policy.name,
                    "policy_version": rt.policy.version,
                    "reason": d.reason,
                    "state": TrialState.queued.value,
                    "attempt": 1,
                    "created_at": at,
                    "device_class": cls,
                    "budget": d.budget,
                    "published_at": None,
                    "started_at": None,
                    "lease_expires_at": None,
                }
            )
            if rt.external:
                trials[-1].update(
                    state=TrialState.running.value,
                    published_at=at,
                    started_at=at,
                    lease_expires_at=at + timedelta(seconds=rt.tell_timeout),
                )
                asked.append(asked_notice(trials[-1]))
            out.append((msg, choose_ms))
            rt.in_flight += 1
            rt.last_active = time.monotonic()
        self.core.store.record_decisions(session, trials, packed_notices(asked))
        # the device features the decision used are what the update will see
        self.core.store.set_contexts(session, contexts)
        return out

    def _choices(self, todo: list[tuple[CampaignRuntime, Any]]) -> list[Choice]:
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


def asked_notice(trial: dict[str, Any]) -> str:
    """One external decision as its asker reads it (in a NOTIFY payload, see
    :func:`packed_notices`): the decision itself, so that the ask needs no read after it
    (``app.client.asked``)."""
    return json.dumps(
        [
            trial["instance_id"],
            trial["uuid"],
            trial["arm_index"],
            trial["propensity"],
            trial["reason"],
            trial["policy_version"],
            trial["attempt"],
            trial["budget"],
            trial["created_at"].isoformat(),
        ]
    )


#: PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more
MAX_NOTICE_BYTES = 7900


def packed_notices(notices: list[str]) -> list[str]:
    """``notices`` (each a JSON array, ASCII) grouped into as few NOTIFY payloads as fit:
    each a JSON array of them. A burst's askers read one or two notices, not one each."""
    out: list[str] = []
    group: list[str] = []
    size = 2
    for n in notices:
        if group and size + len(n) + 1 > MAX_NOTICE_BYTES:
            out.append("[" + ",".join(group) + "]")
            group, size = [], 2
        group.append(n)
        size += len(n) + 1
    if group:
        out.append("[" + ",".join(group) + "]")
    return out


#: the trials.reason column's length
MAX_REASON = 50


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
    return Decision(
        int(arm), float(p), reason=reason, budget=None if budget is None else float(budget)
    )
