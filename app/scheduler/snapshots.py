"""Policy snapshots: a campaign's learnt state after its last applied result, so a restart
loads it and replays only the results after it. A snapshot is a cache of committed results:
it is taken in a transaction of its own after the decisions, and a failure only postpones it."""

from __future__ import annotations

import logging
import time

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
                    self.take(session, rt)
        except sqlalchemy.exc.DBAPIError as exc:
            log.warning("policy snapshot postponed (%s)", exc.orig)
            for rt in due:
                rt.since_snapshot = s.snapshot_every

    def take_all(self) -> None:
        """Every campaign with results since its last snapshot (at shutdown)."""
        with self.core.Session() as session, session.begin():
            for rt in self.core.runtimes.values():
                if rt.since_snapshot:
                    self.take(session, rt)

    def take(self, session: Session, rt: CampaignRuntime) -> None:
        self.core.store.add_snapshot(
            session,
            PolicySnapshot(
                campaign_id=rt.id,
                policy_name=rt.policy.name,
                policy_version=rt.policy.version,
                n_updates=rt.policy.n_updates,
                last_result_id=rt.last_result_id,
                state=rt.policy.get_state(),
            ),
        )
        rt.since_snapshot = 0
        rt.snapshot_at = time.monotonic()
