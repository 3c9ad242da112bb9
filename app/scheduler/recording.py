"""Recording what workers report: results (written idempotently by trial and attempt, the
policy updated in the same transaction, in result-id order) and heartbeats (leases renewed).

A result's policy update that raises is quarantined: kept with the error, not applied, so
neither this process nor a restart feeds it to the policy again; the campaign is reloaded
(a reload that raises too marks it broken). Results of a broken campaign are recorded, never
applied.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.scheduler.core import Core, now
from app.scheduler.runtime import CampaignBroken, CampaignRuntime, apply_result
from models.states import OPEN_STATES, InstanceStatus, TrialEventKind, TrialState
from tasks.messages import Heartbeat, ResultMessage
from tasks.store.blobs import refs_in

log = logging.getLogger("banditq.scheduler")


class Recorder:
    """Owned by the scheduler thread; writes only inside the caller's transaction."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def renew_leases(self, session: Session, beats: list[Heartbeat]) -> None:
        """A worker running a trial sends heartbeats: the attempt it names (only that one)
        is marked running and its lease extended, so a long trial is never re-issued."""
        until = now() + timedelta(seconds=self.core.settings.lease_seconds)
        for b in beats:
            self.core.store.renew_lease(session, b.trial, b.attempt, b.worker, until)
        if beats:
            self.core.hooks.heartbeats(len(beats))

    def record(self, session: Session, messages: list[ResultMessage]) -> int:
        """Write the results of open attempts (others are duplicates), update the policies.
        Returns the number written."""
        if not messages:
            return 0
        by_uuid: dict[str, list[ResultMessage]] = {}
        for m in messages:
            by_uuid.setdefault(m.trial, []).append(m)
        trials = self.core.store.trials_for_results(session, list(by_uuid))
        if len(trials) < len(by_uuid):
            # A trial whose (non-durable) decision a database crash lost: decided again.
            unknown = len(by_uuid) - len(trials)
            self.core.hooks.unknown_results(unknown)
            log.warning("refused %d result(s) for trials the database does not know", unknown)
        rows = _Rows()
        for t in trials:
            current = [m for m in by_uuid[t.uuid] if m.attempt == t.attempt]
            if not current and t.state == TrialState.queued.value and t.attempt > 1:
                # Re-issued but not started: the previous attempt's result (it was only
                # slow, or waited behind a restart) counts; the re-issued run is a duplicate.
                current = [m for m in by_uuid[t.uuid] if m.attempt == t.attempt - 1]
            live = t.state in OPEN_STATES and bool(current)
            dupes = len(by_uuid[t.uuid]) - (1 if live else 0)
            if dupes:
                self.core.hooks.duplicate_results(dupes)
            if not live:
                continue  # redelivered or stale: the first result already counted
            try:
                rt: CampaignRuntime | None = self.core.runtime(session, t.campaign_id)
            except CampaignBroken:
                rt = None  # kept, not applied
            ok = current[0].ok and rt is not None
            if current[0].retryable and rt is not None and t.attempt < rt.max_attempts:
                self._retry(session, t, current[0])
                continue
            rows.add(t, current[0], ok)
            if rt is None:
                continue
            rt.in_flight = max(0, rt.in_flight - 1)
            rt.maybe_pending = True
            rt.last_active = time.monotonic()
            if ok:
                self._check_floor(rt, current[0])
                rows.applied.append((rt, t.context, t.arm_index, current[0]))
        if not rows.results:
            return 0
        per_campaign: dict[int, int] = {}
        for rt, *_ in rows.applied:
            per_campaign[rt.id] = per_campaign.get(rt.id, 0) + 1
        result_ids = self.core.store.record_results(
            session, rows.results, rows.trials, rows.instances, per_campaign, rows.links()
        )
        ok_ids = [rid for rid, r in zip(result_ids, rows.results, strict=True) if r["applied"]]
        self._apply(session, sorted(zip(ok_ids, rows.applied, strict=True), key=lambda p: p[0]))
        failures = sum(1 for r in rows.results if r["status"] != "succeeded")
        self.core.hooks.recorded(len(rows.results), failures)
        return len(rows.results)

    def _retry(self, session: Session, t: Any, m: ResultMessage) -> None:
        """A transient failure (the worker lost its store or database): re-issued as the
        next attempt, unpublished (the outbox relay sends it), the reason in an event."""
        at = now()
        self.core.store.reissue(session, t.id, t.attempt + 1)
        detail = f"re-issued as attempt {t.attempt + 1}: {m.error or 'transient failure'}"
        self.core.store.add_event(session, t, TrialEventKind.retried, detail[:4000], at)
        self.core.hooks.lease_expired(reissued=True)
        log.warning("trial %s: %s", t.uuid, detail[:300])

    def _apply(
        self,
        session: Session,
        in_order: list[tuple[int, tuple[CampaignRuntime, Any, int, ResultMessage]]],
    ) -> None:
        """Policy updates in result-id order: the same order a restart replays them in."""
        broken: set[int] = set()
        for rid, (rt, context, arm_index, m) in in_order:
            if rt.id in broken:
                # Applied by the reload (snapshot + applied results, on next use); if one of
                # them raises there too, the reload marks the campaign broken.
                continue
            try:
                cost = rt.learnt_cost(m.cost, m.metrics)
                apply_result(rt.policy, rt.vector(context), arm_index, cost, m.quality, m.censored)
            except Exception as exc:  # a policy bug: quarantine this result, not the service
                self._quarantine(session, rt, rid, exc)
                broken.add(rt.id)
                continue
            rt.last_result_id = rid
            rt.since_snapshot += 1
        for cid in broken:
            # Its state may be half-updated: rebuild it from snapshot + applied results.
            self.core.runtimes.pop(cid, None)

    def _quarantine(
        self, session: Session, rt: CampaignRuntime, result_id: int, exc: Exception
    ) -> None:
        error = f"quarantined: policy {rt.policy_name!r} update raised {type(exc).__name__}: {exc}"
        log.error("campaign %s: %s (result %d)", rt.name, error, result_id, exc_info=exc)
        self.core.hooks.policy_error()
        self.core.store.quarantine(session, rt.id, result_id, error[:4000])

    def _check_floor(self, rt: CampaignRuntime, m: ResultMessage) -> None:
        """Count and log a monitored result below the campaign's quality floor."""
        floor = rt.quality_floor
        if m.quality is None or floor is None or m.quality >= floor:
            return
        self.core.hooks.quality_violation()
        served = "reference output served" if m.metrics.get("fallback") else "output served as is"
        log.warning(
            "campaign %s trial %s: quality %.4f below the floor %.4f (arm %s; %s)",
            rt.name,
            m.trial,
            m.quality,
            floor,
            m.metrics.get("arm"),
            served,
        )


class _Rows:
    """The rows one burst of results writes (set-based on PostgreSQL: app.scheduler.store)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.trials: list[dict[str, Any]] = []
        self.instances: list[dict[str, Any]] = []
        self.applied: list[tuple[CampaignRuntime, Any, int, ResultMessage]] = []

    def add(self, t: Any, m: ResultMessage, apply: bool) -> None:
        recorded = now()
        self.results.append(
            {
                "trial_id": t.id,
                "campaign_id": t.campaign_id,
                "attempt": m.attempt,
                "status": m.status.value,
                "cost": m.cost,
                "iterations": m.iterations,
                "converged": m.converged,
                "residual": m.residual,
                "latency_ms": m.latency_ms,
                "quality": m.quality,
                "device": m.device,
                "worker": m.worker,
                "error": m.error,
                "metrics": m.metrics,
                "outputs": m.outputs,
                "applied": apply,
                "censored": m.censored,
                "started_at": m.started_at,
                "finished_at": m.finished_at,
                "recorded_at": recorded,
            }
        )
        self.trials.append(
            {
                "id": t.id,
                "state": m.status.value,
                "worker": m.worker,
                "started_at": m.started_at,
                "finished_at": m.finished_at or recorded,
                "error": m.error,
            }
        )
        status = InstanceStatus.done if m.ok else InstanceStatus.failed
        self.instances.append({"id": t.instance_id, "status": status.value})

    def links(self) -> list[dict[str, Any]]:
        """Stored arrays a result refers to (a solution): kept by `store gc`."""
        return [
            {
                "trial_id": r["trial_id"],
                "sha256": ref["sha256"],
                "nbytes": int(ref.get("nbytes", 0)),
                "campaign_id": r["campaign_id"],
            }
            for r in self.results
            for ref in refs_in(r["outputs"])
        ]
