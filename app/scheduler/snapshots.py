"""Policy snapshots: a campaign's learnt state after its last applied result, so a restart
loads it and replays only the results after it. A snapshot is a cache of committed results:
it is taken in a transaction of its own after the decisions, and a failure only postpones it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy
from sqlalchemy.orm import Session

from app.scheduler.core import Core
from app.scheduler.runtime import CampaignRuntime
from models import PolicySnapshot

log = logging.getLogger("banditq.scheduler")


class Snapshots:
    """Owned by the scheduler thread."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def take_due(self) -> None:
        """Snapshot policies with ``snapshot_every`` new results (and none in the last
        ``snapshot_seconds``: a snapshot can be large)."""
        s = self.core.settings
        at = time.monotonic()
        due = [
            rt
            for rt in self.core.runtimes.values()
            if rt.since_snapshot >= s.snapshot_every and at - rt.snapshot_at >= s.snapshot_seconds
        ]
        if not due:
            return
        try:
            with self.core.Session() as session, session.begin():
                for rt in due:
                    self.take_guarded(session, rt)
        except sqlalchemy.exc.DBAPIError as exc:
            log.warning("policy snapshot postponed (%s)", exc.orig)
            for rt in due:
                rt.since_snapshot = s.snapshot_every

    def evict_idle(self) -> int:
        """Let go of campaigns with nothing in flight or pending for ``evict_seconds``
        (snapshotted first when they have results since their last snapshot): a finished
        campaign does not stay in the scheduler's memory. Loaded again on demand."""
        limit = self.core.settings.evict_seconds
        at = time.monotonic()
        idle = [
            rt
            for rt in self.core.runtimes.values()
            if rt.in_flight == 0 and not rt.maybe_pending and at - rt.last_active >= limit
        ]
        if not idle:
            return 0
        try:
            with self.core.Session() as session, session.begin():
                for rt in idle:
                    if rt.since_snapshot:
                        self.take_guarded(session, rt)
        except sqlalchemy.exc.DBAPIError as exc:
            log.warning("eviction postponed (%s)", exc.orig)
            return 0
        for rt in idle:
            self.core.runtimes.pop(rt.id, None)
        return len(idle)

    def take_all(self) -> None:
        """Every campaign with results since its last snapshot (at shutdown)."""
        with self.core.Session() as session, session.begin():
            for rt in self.core.runtimes.values():
                if rt.since_snapshot:
                    self.take_guarded(session, rt)

    def take_guarded(self, session: Session, rt: CampaignRuntime) -> None:
        """:meth:`take`, a policy whose ``get_state`` raises only postponing its own (the
        campaign goes on; a restart replays its results from the last good snapshot)."""
        try:
            state = rt.policy.get_state()
            json.dumps(state, allow_nan=False)  # PostgreSQL refuses NaN in JSON
        except Exception as exc:
            log.error("campaign %s: policy get_state raised %s: %s", rt.name, type(exc), exc)
            self.core.hooks.policy_error()
            rt.since_snapshot = 0
            rt.snapshot_at = time.monotonic()
            return
        self.take(session, rt, state)

    def take(self, session: Session, rt: CampaignRuntime, state: Any = None) -> None:
        self.core.store.add_snapshot(
            session,
            PolicySnapshot(
                campaign_id=rt.id,
                policy_name=rt.policy.name,
                policy_version=rt.policy.version,
                n_updates=rt.policy.n_updates,
                last_result_id=rt.last_result_id,
                state=rt.policy.get_state() if state is None else state,
            ),
        )
        rt.since_snapshot = 0
        rt.snapshot_at = time.monotonic()
