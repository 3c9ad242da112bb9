"""Decisions: for every campaign with room in flight and pending instances, ask its policy for
an arm (with the propensity), write the trial rows, and publish them after the commit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.scheduler.choosing import Chooser
from app.scheduler.core import Core, now
from app.scheduler.errors import RETRYABLE
from app.scheduler.notices import asked_notice, packed_notices
from app.scheduler.outbox import Outbox
from app.scheduler.runtime import CampaignRuntime
from models.states import TrialState
from tasks.messages import TrialMessage

log = logging.getLogger("banditq.scheduler")


@dataclass
class _Chunk:
    """A chunk's decisions, made and not yet written: (message, choice ms) each, the trial
    rows, the askers' notices and the contexts the decisions extended."""

    decided: list[tuple[TrialMessage | None, float]]
    trials: list[dict[str, Any]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    contexts: list[dict[str, Any]] = field(default_factory=list)


class Decider:
    """Owned by the scheduler thread. ``on_failure(exc)`` is called when a decision
    transaction fails (the scheduler drops its in-memory state and pauses). A burst's
    chunk writes run on one writer thread of its own, one at a time, each handed its
    session whole; everything else stays on the scheduler thread."""

    def __init__(
        self, core: Core, outbox: Outbox, chunk: int, on_failure: Callable[[Exception], None]
    ) -> None:
        self.core = core
        self.outbox = outbox
        self.chunk = chunk
        self.on_failure = on_failure
        self._pool: ThreadPoolExecutor | None = None
        self.chooser = Chooser(core)

    def wanted(self) -> bool:
        return bool(self.outbox.unmarked or self.outbox.poisoned) or self.core.wants_room()

    def decide_and_publish(self) -> int:
        """Decide in chunks of ``chunk``, each committed on its own (a decision waits only
        for its chunk's commit, whose latency grows with its rows), then publish them all.
        While a chunk's rows are written (on the writer thread), the next chunk's choices
        are made: a burst pays the larger of the two per chunk, not their sum."""
        messages: list[TrialMessage] = []
        session = self.core.DecisionSession()
        try:
            # The pending read shares the first chunk's transaction: a lone instance (a
            # solve in a simulation loop) is decided in one round of BEGIN .. COMMIT.
            session.begin()
            self.outbox.flush_marks(session)
            todo = self._pending(session)
            # no pending instance: one empty chunk still commits the outbox's marks
            parts = [todo[lo : lo + self.chunk] for lo in range(0, len(todo), self.chunk)] or [[]]
            ahead = self._prepare(parts[0])
        except RETRYABLE as exc:
            session.close()
            self.on_failure(exc)
            return 0
        except BaseException:
            session.close()
            raise
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            # the last chunk has nothing to overlap with: written here, no hand-over
            job = None if last else self._writer().submit(self._write, session, ahead)
            following = None if last else self._prepare(parts[i + 1])
            decided = ahead.decided
            try:
                commit_ms = self._write(session, ahead) if job is None else job.result()
            except RETRYABLE as exc:
                self.outbox.publish(messages)  # the chunks committed before the failure
                self.on_failure(exc)
                return len(messages)
            except Exception as exc:
                # A statement failing on one campaign's values: decide campaign by campaign
                # and stop only the one that still fails (the next chunk is chosen again:
                # a campaign marked broken here has no decision in it).
                log.warning("a decision chunk failed (%s); deciding campaign by campaign", exc)
                self.core.forget()
                decided, commit_ms = self._decide_apart(part), 0.0
                following = None if last else self._prepare(parts[i + 1])
            self.core.hooks.decided(len(decided), [ms for _m, ms in decided], commit_ms)
            messages.extend(m for m, _ in decided if m is not None)
            if following is not None:
                ahead, session = following, self.core.DecisionSession()
        # Published together after the last chunk: publishing wakes the broker and workers,
        # which on a shared host would preempt the choices of the next chunk.
        self.outbox.publish(messages)
        return len(messages)

    def close(self) -> None:
        """Stop the writer thread (between bursts it has nothing in flight)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _writer(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="banditq-decision-writer")
        return self._pool

    def _write(self, session: Session, chunk: _Chunk) -> float:
        """``chunk``'s rows written and committed in ``session`` (begun by the caller or
        not; closed here, whatever happens). Returns the commit's time in ms."""
        try:
            if not session.in_transaction():
                session.begin()
            self._record(session, chunk)
            t_commit = time.perf_counter()
            session.commit()
            return (time.perf_counter() - t_commit) * 1000.0
        finally:
            session.close()  # rolls back what did not commit

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
        """:meth:`_prepare` and :meth:`_record` in ``session``; (message, choice ms) each."""
        chunk = self._prepare(todo)
        self._record(session, chunk)
        return chunk.decided

    def _record(self, session: Session, chunk: _Chunk) -> None:
        self.core.store.record_decisions(session, chunk.trials, packed_notices(chunk.asked))
        # the device features the decision used are what the update will see
        self.core.store.set_contexts(session, chunk.contexts)

    def _prepare(self, todo: list[tuple[CampaignRuntime, Any]]) -> _Chunk:
        """Choose an arm for each instance and build its trial row, its message (none for
        an external trial: its asker, woken at the commit, runs it: it is running from
        then on, its lease the campaign's tell timeout) and the asker's notice. Touches
        no database; counts the decisions in flight."""
        chunk = _Chunk([])
        for rt, inst, d, cls, context, choose_ms in self.chooser.choices(todo):
            if rt.id in self.core.broken:  # its kind's message hook failed just now
                continue
            try:
                tid = str(uuid.uuid4())
                msg = (
                    None
                    if rt.external
                    else rt.message(
                        tid,
                        1,
                        inst.spec,
                        d.arm,
                        d.reason,
                        inst.seq,
                        cls,
                        inst.id,
                        d.budget,
                        d.budget_unit,
                    )
                )
            except Exception as exc:  # this campaign's kind: it alone stops
                self.core.mark_broken(rt.id, f"deciding failed: {type(exc).__name__}: {exc}")
                continue
            if context != inst.context:
                chunk.contexts.append({"id": inst.id, "context": context})
            at = now()
            row = {
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
                "budget_unit": d.budget_unit,
                "published_at": None,
                "started_at": None,
                "lease_expires_at": None,
            }
            if rt.external:
                row.update(
                    state=TrialState.running.value,
                    published_at=at,
                    started_at=at,
                    lease_expires_at=at + timedelta(seconds=rt.tell_timeout),
                )
                chunk.asked.append(asked_notice(row))
            chunk.trials.append(row)
            chunk.decided.append((msg, choose_ms))
            rt.in_flight += 1
            rt.last_active = time.monotonic()
        return chunk
