"""Decisions: for every campaign with room in flight and pending instances, ask its policy for
an arm (with the propensity), write the trial rows, and publish them after the commit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
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
        return bool(self.outbox.unmarked) or self.core.wants_room()

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
            lo += self.chunk
            commit_ms = (committed - t_commit) * 1000.0
            self.core.hooks.decided(len(decided), [ms for _m, ms in decided], commit_ms)
            messages.extend(m for m, _ in decided)
        # Published together after the last chunk: publishing wakes the broker and workers,
        # which on a shared host would preempt the choices of the next chunk.
        self.outbox.publish(messages)
        return len(messages)

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
    ) -> list[tuple[TrialMessage, float]]:
        """Choose an arm for each instance; trial rows and status updates go to ``session``.
        Returns (message, choice time in ms) per decision."""
        out: list[tuple[TrialMessage, float]] = []
        trials = []
        contexts: list[dict[str, Any]] = []
        for rt, inst in todo:
            t0 = time.perf_counter()
            cls, context, allowed = None, inst.context, None
            if rt.auto_device:
                routed = self.core.devices.route(rt, inst.context)
                if routed is None:  # no live worker yet: its announcement wakes the campaign
                    rt.maybe_pending = False
                    self.core.hooks.waiting_for_workers()
                    continue
                cls, context, allowed = routed
                if context != inst.context:
                    contexts.append({"id": inst.id, "context": context})
            d = self.choose(rt, inst.seq, context, allowed)
            choose_ms = (time.perf_counter() - t0) * 1000.0
            tid = str(uuid.uuid4())
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
                    "created_at": now(),
                    "device_class": cls,
                }
            )
            msg = rt.message(tid, 1, inst.spec, d.arm, d.reason, inst.seq, cls, inst.id)
            out.append((msg, choose_ms))
            rt.in_flight += 1
        self.core.store.record_decisions(session, trials)
        # the device features the decision used are what the update will see
        self.core.store.set_contexts(session, contexts)
        return out

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
        try:
            if allowed is None:
                return rt.policy.choose(rt.vector(context), key=seq)
            return rt.policy.choose_among(rt.vector(context), seq, allowed)
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
