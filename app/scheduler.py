"""The scheduler: decide an arm per pending instance, publish trials, learn from results.

Event-driven: it blocks on the broker for result messages (from workers) and wake-up
messages (from clients), and handles each burst in one database transaction. A slow safety
sweep (``sweep_seconds``) catches what a missed message would leave behind: instances submitted
while the broker was down and decisions committed but never published (the outbox).

Ownership and ordering: only the scheduler writes trials, results and snapshots. A decision is
committed before its Celery message is published; a result and its policy update are committed
in one transaction, so the policy's state always equals snapshot + applied results after it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import amqp.exceptions
import kombu
import numpy as np
import sqlalchemy
from kombu.message import Message
from sqlalchemy import Engine, event, func, insert, select, text, update
from sqlalchemy.orm import Session

from app.bulk import BulkWriter
from app.config import Settings
from app.db import make_engine, session_factory
from app.devices import DeviceRegistry
from app.locks import SchedulerLock
from app.metrics import Metrics
from app.policies.base import Decision
from app.runtime import OPEN_STATES, CampaignRuntime, load_runtime
from models import Campaign, Instance, PolicySnapshot, Result, Trial, TrialEvent
from tasks.messages import (
    NOTIFY_CHANNEL,
    PROTOCOL,
    RUN_LONG_TRIAL_TASK,
    RUN_TRIAL_TASK,
    events_queue,
    parse_time,
    results_queue,
)
from tasks.publish import TaskPublisher
from tasks.store.blobs import refs_in

log = logging.getLogger("banditq.scheduler")
#: after a message, how long to wait for more of a burst on transports that cannot say
#: whether more has arrived (the embedded broker); on AMQP only what has arrived is read
BURST_WAIT_S = 0.001


def _more_arrived(conn: kombu.Connection) -> bool:
    """Has the broker already sent more (AMQP: bytes waiting on the socket, or a partial
    frame buffered)? A timed wait instead costs at least a millisecond (``poll`` rounds up)
    on every lone message. Transports that cannot tell report True (a timed wait follows)."""
    import select

    from amqp.transport import TCPTransport

    transport: Any = getattr(conn.connection, "transport", None)
    if not isinstance(transport, TCPTransport) or type(transport) is not TCPTransport:
        return True  # SSL buffers decrypted bytes the socket cannot show
    if transport.sock is None or transport._read_buffer:
        return True
    return bool(select.select([transport.sock], [], [], 0)[0])


#: Failures of the database or the broker: in-memory state is dropped, messages requeued and
#: the step retried. Anything else is a bug and is not retried as if a service had failed.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    kombu.exceptions.OperationalError,
    # py-amqp's own: a broker shutting down closes the connection with CONNECTION_FORCED,
    # which reaches drain_events and acks as amqp.exceptions.ConnectionForced
    amqp.exceptions.AMQPError,
)
RETRYABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    *BROKER_ERRORS,
)


def _now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """One per deployment (guarded by a lock). Not thread-safe: ``run`` owns everything."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        batch_size: int = 500,
        decision_chunk: int = 32,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        # No pre-ping: every failure inside a transaction is handled (state dropped, messages
        # requeued, retried), and a ping is a round trip per transaction.
        self.engine = engine or make_engine(settings.database_url, pool_pre_ping=False)
        self.Session = session_factory(self.engine)
        self.bulk = BulkWriter(self.engine)
        #: decisions commit here: without waiting for the WAL flush unless durable_decisions
        self.decision_engine = (
            _async_commit_engine(self.engine)
            if self.bulk.pg and not settings.durable_decisions
            else self.engine
        )
        self.DecisionSession = session_factory(self.decision_engine)
        self.publisher = TaskPublisher(self._broker, settings.queue, settings.queue_type)
        self.batch_size = batch_size
        self.decision_chunk = decision_chunk
        self.metrics = metrics or Metrics()
        self.runtimes: dict[int, CampaignRuntime] = {}
        #: live workers' device classes, for campaigns decided per device (device "auto")
        self.devices = DeviceRegistry(ttl=4 * settings.announce_seconds)
        self._buffer: list[tuple[dict[str, Any], Message]] = []
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._lock: SchedulerLock | None = None
        #: published trials whose published_at/lease the next transaction records
        self._unmarked: list[tuple[list[str], datetime, datetime]] = []
        #: per decision: policy choice plus the commit of its transaction (ms)
        self.decision_latencies: deque[float] = deque(maxlen=200_000)
        #: per transaction that committed decisions: the COMMIT alone (ms)
        self.commit_latencies: deque[float] = deque(maxlen=200_000)

    def _broker(self) -> kombu.Connection:
        return kombu.Connection(
            self.settings.broker_url, transport_options=self.settings.broker_transport_options()
        )

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()

    def run(
        self, *, idle_exit: float | None = None, on_step: Callable[[], None] | None = None
    ) -> None:
        """Serve until :meth:`stop` (or ``idle_exit`` seconds with nothing to do)."""
        with SchedulerLock(self.settings, self.engine) as self._lock:
            log.info("scheduler started: %s", self.settings.redacted())
            try:
                self._run(idle_exit, on_step)
            finally:
                self.publisher.close()

    def _run(self, idle_exit: float | None, on_step: Callable[[], None] | None) -> None:
        self.sweep()
        # Modules, policies and caches loaded so far live as long as the process: keep them
        # out of the cyclic collector, whose full passes over them (~50 ms here) would stall
        # decisions now and then.
        gc.freeze()
        last_work = time.monotonic()
        while not self._stop.is_set():
            try:
                self._serve(idle_exit, last_work, on_step)
                return
            except BROKER_ERRORS as exc:
                log.warning("broker connection lost (%s); reconnecting in 2 s", exc)
                self._requeue_buffer()
                self._stop.wait(2.0)
            except sqlalchemy.exc.DBAPIError as exc:
                # PostgreSQL restarting: in-memory state is a cache of the database, so
                # drop it and carry on once the database answers again.
                log.warning("database unavailable (%s); retrying in 2 s", exc.orig)
                self.runtimes.clear()
                self._requeue_buffer()
                self._stop.wait(2.0)

    def _requeue_buffer(self) -> None:
        """Hand unprocessed messages back (redelivered later; results are idempotent)."""
        for _b, m in self._buffer:
            # If the channel is gone the broker redelivers unacked messages anyway.
            with contextlib.suppress(Exception):
                m.requeue()
        self._buffer.clear()

    def _serve(
        self, idle_exit: float | None, last_work: float, on_step: Callable[[], None] | None
    ) -> None:
        with self._broker() as conn:
            conn.ensure_connection(max_retries=30, interval_start=0.5, interval_max=5)
            channel = conn.channel()
            consumer = kombu.Consumer(
                channel,
                queues=[
                    results_queue(self.settings.queue, self.settings.queue_type),
                    events_queue(self.settings.queue, self.settings.queue_type),
                ],
                callbacks=[self._on_message],
                accept=["json"],
                on_decode_error=self._on_decode_error,
                prefetch_count=self.batch_size * 2,
            )
            consumer.consume()
            while not self._stop.is_set():
                timeout = min(self.settings.sweep_seconds, 0.5)
                try:
                    conn.drain_events(timeout=timeout)
                    # Gather the burst: what has already arrived, up to the batch size.
                    while len(self._buffer) < self.batch_size and _more_arrived(conn):
                        conn.drain_events(timeout=BURST_WAIT_S)
                except TimeoutError:
                    pass
                did = self.step()
                if did:
                    last_work = time.monotonic()
                due = time.monotonic() - self._last_sweep >= self.settings.sweep_seconds
                if due and self.sweep():
                    last_work = time.monotonic()
                if on_step is not None:
                    on_step()
                if idle_exit is not None and time.monotonic() - last_work > idle_exit:
                    log.info("idle for %.1f s; exiting", idle_exit)
                    return
            self.step()

    def _on_decode_error(self, message: Message, exc: Exception) -> None:
        """A message that is not JSON (a pickle, say) is refused: logged, counted, dropped."""
        log.warning(
            "refusing a message of content type %r (only JSON is accepted): %s",
            message.content_type,
            exc,
        )
        self.metrics.inc("malformed_messages")
        message.ack()

    def _on_message(self, body: Any, message: Message) -> None:
        if not isinstance(body, dict) or body.get("v") != PROTOCOL:
            log.warning(
                "refusing malformed message (not a protocol-%d object): %.200r", PROTOCOL, body
            )
            message.ack()
            self.metrics.inc("malformed_messages")
            return
        self._buffer.append((body, message))

    # ------------------------------------------------------------------ the work
    def step(self) -> int:
        """Handle buffered messages, decide for woken campaigns, publish. Returns work done.

        Two transactions: results (and heartbeats) commit durably before their messages are
        acknowledged; then decisions commit and are published. Unless ``durable_decisions``
        is set, the decision transaction does not wait for PostgreSQL's WAL flush (the next
        durable commit, or the WAL writer within ~0.6 s, flushes it): after a database crash
        the lost tail of decisions is decided again, and results for the lost trials are
        refused as unknown. WAL is written in order, so a durable result never refers to a
        lost decision, and the database is always a consistent prefix of what happened."""
        buffered, self._buffer = self._buffer, []
        results = [b for b, _ in buffered if b.get("type") == "result"]
        beats = [b for b, _ in buffered if b.get("type") == "heartbeat"]
        announced = [b for b, _ in buffered if b.get("type") == "worker"]
        for b, _ in buffered:
            if b.get("type") == "wake":
                self._wake(b.get("campaign"))
        done = 0
        try:
            if results or beats or announced:
                with self.Session() as session, session.begin():
                    if beats:  # before a renewal, which must win over the queued lease
                        self._flush_marks(session)
                    self._renew_leases(session, beats)
                    if announced and self.devices.record(session, announced):
                        for rt in self.runtimes.values():
                            rt.maybe_pending = rt.maybe_pending or rt.auto_device
                    done += self._record_results(session, results)
        except RETRYABLE as exc:
            self._database_failed(exc, buffered)
            return 0
        self._ack(buffered)
        if self._wants_decisions():
            done += self._decide_and_publish()
        self._snapshot_due()
        self.metrics.set("in_flight", sum(rt.in_flight for rt in self.runtimes.values()))
        self.metrics.set("campaigns_loaded", len(self.runtimes))
        return done

    def _decide_and_publish(self) -> int:
        """Decide for every campaign with room and pending instances, committing in chunks
        of ``decision_chunk``, then publish them all: a decision waits only for its own
        chunk's commit (a commit's latency grows with the rows it covers: 0.28 ms for one,
        0.66 ms for 160 trials here)."""
        payloads: list[dict[str, Any]] = []
        todo: list[tuple[CampaignRuntime, Any]] | None = None
        lo = 0
        # The pending read shares the first chunk's transaction: a lone instance (a solve in
        # a simulation loop) is decided in one round of BEGIN .. COMMIT.
        while todo is None or lo < len(todo):
            try:
                with self.DecisionSession() as session, session.begin():
                    if todo is None:
                        self._flush_marks(session)
                        todo = self._pending(session)
                    chunk = todo[lo : lo + self.decision_chunk]
                    decided = self._decide(session, chunk) if chunk else []
                    t_commit = time.perf_counter()
                committed = time.perf_counter()
            except RETRYABLE as exc:
                self._publish(payloads)  # the chunks committed before the failure
                self._database_failed(exc, [])
                return len(payloads)
            lo += self.decision_chunk
            if not decided:
                continue
            commit_ms = (committed - t_commit) * 1000.0
            self.commit_latencies.append(commit_ms)
            self.metrics.observe("commit_latency_ms", commit_ms)
            for _t, choose_ms in decided:
                self.decision_latencies.append(choose_ms + commit_ms)
                self.metrics.observe("decision_latency_ms", choose_ms + commit_ms)
            payloads.extend(t for t, _ in decided)
        # Published together after the last chunk: publishing wakes the broker and workers,
        # which on a shared host would preempt the choices of the next chunk.
        self._publish(payloads)
        return len(payloads)

    def _database_failed(self, exc: Exception, buffered: list[tuple[Any, Message]]) -> None:
        """The database is the truth: forget in-memory state, hand the messages back, and
        retry after a pause (a restarting PostgreSQL comes back within seconds)."""
        log.warning("database transaction failed (%s); retrying in 1 s", exc)
        self.runtimes.clear()
        self._unmarked.clear()  # unmarked trials are republished by the outbox: harmless
        for _b, m in buffered:
            try:
                m.requeue()
            except Exception:
                log.warning("could not requeue a message; the broker will redeliver it")
        self._stop.wait(1.0)

    def _ack(self, buffered: list[tuple[Any, Message]]) -> None:
        """Acknowledge a handled burst. On AMQP one ``multiple`` ack of the last delivery
        covers every earlier one on the channel (all handled, acked or requeued by now);
        kombu's virtual transports ignore ``multiple``, so there each is acked."""
        if not buffered:
            return
        if self.settings.embedded_broker:
            for _b, m in buffered:
                m.ack()
        else:
            buffered[-1][1].ack(multiple=True)

    def _wants_decisions(self) -> bool:
        return bool(self._unmarked) or any(
            rt.maybe_pending and rt.in_flight < rt.max_in_flight for rt in self.runtimes.values()
        )

    def _flush_marks(self, session: Session) -> None:
        """Record ``published_at`` and the queued lease of trials published since the last
        transaction (deferred so that it costs no transaction of its own)."""
        for uuids, now, until in self._unmarked:
            self.bulk.mark_published(session, uuids, now, until)
        self._unmarked.clear()

    def _wake(self, name: Any) -> None:
        if not isinstance(name, str):
            return
        for rt in self.runtimes.values():
            if rt.name == name:
                rt.maybe_pending = True
                return
        with self.Session() as session:
            cid = session.scalar(select(Campaign.id).where(Campaign.name == name))
            if cid is not None:
                self.runtimes[cid] = load_runtime(session, cid)

    def _renew_leases(self, session: Session, beats: list[dict[str, Any]]) -> None:
        """A worker running a trial sends heartbeats: the attempt it names (only that one)
        is marked running and its lease extended, so a long trial is never re-issued."""
        until = _now() + timedelta(seconds=self.settings.lease_seconds)
        for b in beats:
            trial, attempt = b.get("trial"), b.get("attempt")
            if not isinstance(trial, str) or not isinstance(attempt, int):
                continue
            session.execute(
                update(Trial)
                .where(Trial.uuid == trial, Trial.attempt == attempt, Trial.state.in_(OPEN_STATES))
                .values(
                    state="running",
                    lease_expires_at=until,
                    worker=_str_or_none(b.get("worker"), 200),
                )
            )
        if beats:
            self.metrics.inc("heartbeats", len(beats))

    def _record_results(self, session: Session, messages: list[dict[str, Any]]) -> int:
        if not messages:
            return 0
        by_uuid: dict[str, list[dict[str, Any]]] = {}
        for m in messages:
            if isinstance(m.get("trial"), str):
                by_uuid.setdefault(m["trial"], []).append(m)
        trials = session.execute(
            select(
                Trial.id,
                Trial.uuid,
                Trial.campaign_id,
                Trial.instance_id,
                Trial.arm_index,
                Trial.attempt,
                Trial.state,
                Instance.context,
            )
            .join(Instance, Instance.id == Trial.instance_id)
            .where(self.bulk.uuid_in(list(by_uuid)))
        ).all()
        if len(trials) < len(by_uuid):
            # A trial whose (non-durable) decision a database crash lost: decided again.
            unknown = len(by_uuid) - len(trials)
            self.metrics.inc("unknown_results", unknown)
            log.warning("refused %d result(s) for trials the database does not know", unknown)
        new_results: list[dict[str, Any]] = []
        trial_updates: list[dict[str, Any]] = []
        instance_updates: list[dict[str, Any]] = []
        applied: list[tuple[CampaignRuntime, Any, int, float, float | None]] = []
        for t in trials:
            current = [m for m in by_uuid[t.uuid] if m.get("attempt") == t.attempt]
            dupes = len(by_uuid[t.uuid]) - (1 if current else 0)
            if t.state not in OPEN_STATES or not current:
                dupes = len(by_uuid[t.uuid])
            if dupes:
                self.metrics.inc("duplicate_results", dupes)
            if t.state not in OPEN_STATES or not current:
                continue  # redelivered or stale: the first result already counted
            m = current[0]
            rt = self._runtime(session, t.campaign_id)
            ok = m.get("status") == "succeeded"
            cost = m.get("cost")
            if ok and not _valid_cost(cost):
                ok = False
                m = {**m, "status": "failed", "error": f"invalid cost {cost!r} from worker"}
            status = "succeeded" if ok else "failed"
            new_results.append(
                {
                    "trial_id": t.id,
                    "campaign_id": t.campaign_id,
                    "attempt": t.attempt,
                    "status": status,
                    "cost": float(cost) if ok and cost is not None else None,
                    "iterations": _int_or_none(m.get("iterations")),
                    "converged": m.get("converged")
                    if isinstance(m.get("converged"), bool)
                    else None,
                    "residual": _float_or_none(m.get("residual")),
                    "latency_ms": _float_or_none(m.get("latency_ms")),
                    "quality": _float_or_none(m.get("quality")),
                    "device": _str_or_none(m.get("device"), 50),
                    "worker": _str_or_none(m.get("worker"), 200),
                    "error": _str_or_none(m.get("error"), 4000),
                    "metrics": m.get("metrics") if isinstance(m.get("metrics"), dict) else {},
                    "outputs": m.get("outputs") if isinstance(m.get("outputs"), dict) else None,
                    "applied": ok,
                    "started_at": parse_time(m.get("started_at")),
                    "finished_at": parse_time(m.get("finished_at")),
                    "recorded_at": _now(),
                }
            )
            trial_updates.append(
                {
                    "id": t.id,
                    "state": status,
                    "worker": _str_or_none(m.get("worker"), 200),
                    "started_at": parse_time(m.get("started_at")),
                    "finished_at": parse_time(m.get("finished_at")) or _now(),
                    "error": _str_or_none(m.get("error"), 4000),
                }
            )
            instance_updates.append({"id": t.instance_id, "status": "done" if ok else "failed"})
            rt.in_flight = max(0, rt.in_flight - 1)
            rt.maybe_pending = True
            if ok:
                quality = new_results[-1]["quality"]
                self._check_floor(rt, t.uuid, quality, new_results[-1]["metrics"])
                applied.append((rt, t.context, t.arm_index, float(cost or 0.0), quality))
        if not new_results:
            return 0
        per_campaign: dict[int, int] = {}
        for rt, *_ in applied:
            per_campaign[rt.id] = per_campaign.get(rt.id, 0) + 1
        links = [  # stored arrays a result refers to (a solution): kept by `store gc`
            {
                "trial_id": r["trial_id"],
                "sha256": ref["sha256"],
                "nbytes": int(ref.get("nbytes", 0)),
                "campaign_id": r["campaign_id"],
            }
            for r in new_results
            for ref in refs_in(r["outputs"])
        ]
        result_ids = self.bulk.record_results(
            session, new_results, trial_updates, instance_updates, per_campaign, links
        )
        # Apply in result-id order: the same order a restart replays them in.
        ok_ids = [rid for rid, r in zip(result_ids, new_results, strict=True) if r["applied"]]
        in_order = sorted(zip(ok_ids, applied, strict=True), key=lambda pair: pair[0])
        broken: set[int] = set()
        for rid, (rt, context, arm_index, cost, quality) in in_order:
            if rt.id in broken:
                continue  # reloaded after this transaction: replays every applied result
            try:
                rt.policy.update(rt.vector(context), arm_index, cost, quality)
            except Exception as exc:  # a policy bug: quarantine this result, not the service
                self._quarantine(session, rt, rid, exc)
                broken.add(rt.id)
                continue
            rt.last_result_id = rid
            rt.since_snapshot += 1
        for cid in broken:
            # Its state may be half-updated: rebuild it from snapshot + applied results.
            self.runtimes.pop(cid, None)
        self.metrics.inc("results", len(new_results))
        self.metrics.inc("failures", sum(1 for r in new_results if r["status"] == "failed"))
        return len(new_results)

    def _quarantine(
        self, session: Session, rt: CampaignRuntime, result_id: int, exc: Exception
    ) -> None:
        """A result whose policy update raised is kept (with the error) but not applied, so
        neither this process nor a restart feeds it to the policy again."""
        error = f"quarantined: policy {rt.policy_name!r} update raised {type(exc).__name__}: {exc}"
        log.error("campaign %s: %s (result %d)", rt.name, error, result_id, exc_info=exc)
        self.metrics.inc("policy_errors")
        session.execute(
            update(Result).where(Result.id == result_id).values(applied=False, error=error[:4000])
        )
        session.execute(
            update(Trial)
            .where(
                Trial.id == select(Result.trial_id).where(Result.id == result_id).scalar_subquery()
            )
            .values(error=error[:4000])
        )
        session.execute(
            update(Campaign).where(Campaign.id == rt.id).values(n_updates=Campaign.n_updates - 1)
        )

    def _check_floor(
        self, rt: CampaignRuntime, trial: str, quality: float | None, metrics: dict[str, Any]
    ) -> None:
        """Count and log a monitored result below the campaign's quality floor."""
        floor = rt.quality_floor
        if quality is None or floor is None or quality >= floor:
            return
        self.metrics.inc("quality_violations")
        served = "reference output served" if metrics.get("fallback") else "output served as is"
        log.warning(
            "campaign %s trial %s: quality %.4f below the floor %.4f (arm %s; %s)",
            rt.name,
            trial,
            quality,
            floor,
            metrics.get("arm"),
            served,
        )

    def _snapshot_due(self) -> None:
        """Snapshot policies with ``snapshot_every`` new results (and none in the last
        ``snapshot_seconds``: a snapshot can be large), in a transaction of their
        own after the decisions committed (a snapshot is a cache of committed results: it
        need not delay decisions). A failure only postpones it to the next step."""
        now = time.monotonic()
        due = [
            rt
            for rt in self.runtimes.values()
            if rt.since_snapshot >= self.settings.snapshot_every
            and now - rt.snapshot_at >= self.settings.snapshot_seconds
        ]
        if not due:
            return
        try:
            with self.Session() as session, session.begin():
                for rt in due:
                    self._snapshot(session, rt)
        except sqlalchemy.exc.DBAPIError as exc:
            log.warning("policy snapshot postponed (%s)", exc.orig)
            for rt in due:
                rt.since_snapshot = self.settings.snapshot_every

    def _snapshot(self, session: Session, rt: CampaignRuntime) -> None:
        session.add(
            PolicySnapshot(
                campaign_id=rt.id,
                policy_name=rt.policy.name,
                policy_version=rt.policy.version,
                n_updates=rt.policy.n_updates,
                last_result_id=rt.last_result_id,
                state=rt.policy.get_state(),
            )
        )
        rt.since_snapshot = 0
        rt.snapshot_at = time.monotonic()

    def _runtime(self, session: Session, campaign_id: int) -> CampaignRuntime:
        rt = self.runtimes.get(campaign_id)
        if rt is None:
            rt = load_runtime(session, campaign_id)
            self.runtimes[campaign_id] = rt
        return rt

    def _pending(self, session: Session) -> list[tuple[CampaignRuntime, Any]]:
        """Pending instances (oldest first) of every campaign with room in flight. Only the
        scheduler moves an instance out of ``pending``, so they stay pending until decided."""
        out: list[tuple[CampaignRuntime, Any]] = []
        for rt in list(self.runtimes.values()):
            room = rt.max_in_flight - rt.in_flight
            if room <= 0 or not rt.maybe_pending:
                continue
            pending = session.execute(
                select(Instance.id, Instance.seq, Instance.context, Instance.spec)
                .where(Instance.campaign_id == rt.id, Instance.status == "pending")
                .order_by(Instance.seq)
                .limit(room)
            ).all()
            if len(pending) < room:
                rt.maybe_pending = False
            out.extend((rt, inst) for inst in pending)
        return out

    def _decide(
        self, session: Session, todo: list[tuple[CampaignRuntime, Any]]
    ) -> list[tuple[dict[str, Any], float]]:
        """Choose an arm for each instance; trial rows and status updates go to ``session``.
        Returns (payload, choice time in ms) per decision."""
        out: list[tuple[dict[str, Any], float]] = []
        trials = []
        contexts: list[dict[str, Any]] = []
        for rt, inst in todo:
            t0 = time.perf_counter()
            cls, context, allowed = None, inst.context, None
            if rt.auto_device:
                routed = self.devices.route(rt, inst.context)
                if routed is None:  # no live worker yet: its announcement wakes the campaign
                    rt.maybe_pending = False
                    self.metrics.inc("waiting_for_workers")
                    continue
                cls, context, allowed = routed
                if context != inst.context:
                    contexts.append({"id": inst.id, "context": context})
            d = self._choose(rt, inst.seq, context, allowed)
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
                    "state": "queued",
                    "attempt": 1,
                    "created_at": _now(),
                    "device_class": cls,
                }
            )
            payload = rt.payload(tid, 1, inst.spec, d.arm, d.reason, inst.seq, cls)
            out.append((payload, choose_ms))
            rt.in_flight += 1
        self.bulk.record_decisions(session, trials)
        if contexts:  # the device features the decision used are what the update will see
            session.execute(update(Instance), contexts)
        self.metrics.inc("decisions", len(trials))
        return out

    def _choose(
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
            self.metrics.inc("policy_errors")
            ok = np.ones(len(rt.arm_ids), dtype=bool) if allowed is None else allowed
            choices = np.flatnonzero(ok)
            arm = int(choices[rt.policy.rng(seq).integers(len(choices))])
            return Decision(arm, 1.0 / len(choices), reason="fallback:policy-error")

    def _publish(self, payloads: list[dict[str, Any]]) -> None:
        """Send trials, then mark them published with a lease (the outbox relay retries the
        unpublished; the sweep re-issues trials whose lease ran out)."""
        sent = set(self._send(payloads))
        if not sent:
            return
        now = _now()
        by_lease: dict[float, list[str]] = {}
        for p in payloads:
            if p["trial"] in sent:
                by_lease.setdefault(self._queued_lease(p), []).append(p["trial"])
        for seconds, uuids in by_lease.items():
            self._unmarked.append((uuids, now, now + timedelta(seconds=seconds)))

    def _queued_lease(self, payload: dict[str, Any]) -> float:
        """Lease of a trial not yet started. With a wall-time limit it may wait in the queue
        behind the campaign's other in-flight trials, each up to that limit, before its first
        heartbeat: the lease covers that wait (running trials renew theirs by heartbeat)."""
        secs = _max_seconds(payload)
        if secs is None:
            return self.settings.lease_seconds
        in_flight = next(
            (rt.max_in_flight for rt in self.runtimes.values() if rt.name == payload["campaign"]),
            1,
        )
        return self.settings.lease_seconds + secs * in_flight

    def _send(self, payloads: list[dict[str, Any]]) -> list[str]:
        sent: list[str] = []
        try:
            for p in payloads:
                limits = _time_limits(p)
                self.publisher.publish(
                    self._task_for(p),
                    p["trial"],
                    p,
                    # Celery would saferepr() the whole payload for its logs: costly.
                    argsrepr=f"trial {p['trial']} attempt {p['attempt']}",
                    time_limit=limits.get("time_limit"),
                    soft_time_limit=limits.get("soft_time_limit"),
                    device_class=p.get("device_class"),
                )
                sent.append(p["trial"])
        except Exception as exc:
            log.warning(
                "publish failed after %d of %d trials (%s); outbox will retry",
                len(sent),
                len(payloads),
                exc,
            )
        return sent

    def _task_for(self, payload: dict[str, Any]) -> str:
        """Trials that may outlive the broker's acknowledgement timeout are acked on receipt."""
        secs = _max_seconds(payload)
        long = secs is not None and secs > self.settings.consumer_timeout / 2
        return RUN_LONG_TRIAL_TASK if long else RUN_TRIAL_TASK

    # ------------------------------------------------------------------ safety sweep
    def sweep(self) -> int:
        """Find pending work no message announced, and republish the unpublished outbox."""
        self._last_sweep = time.monotonic()
        if self._lock is not None:
            self._lock.check()
        if self._unmarked:  # before the outbox query: those trials were published
            with self.Session() as session, session.begin():
                self._flush_marks(session)
        with self.Session() as session:
            if not self.devices.loaded:
                self.devices.load(session)
            # One index probe per campaign (a DISTINCT over instances would read them all).
            has_pending = (
                select(Instance.id)
                .where(Instance.campaign_id == Campaign.id, Instance.status == "pending")
                .exists()
            )
            cids = session.scalars(select(Campaign.id).where(has_pending)).all()
            for cid in cids:
                self._runtime(session, cid).maybe_pending = True
            stale = session.execute(
                select(
                    Trial.uuid,
                    Trial.attempt,
                    Trial.campaign_id,
                    Trial.arm_index,
                    Trial.reason,
                    Instance.seq,
                    Instance.spec,
                    Trial.device_class,
                )
                .join(Instance, Instance.id == Trial.instance_id)
                .where(Trial.state == "queued", Trial.published_at.is_(None))
                .order_by(Trial.id)
                .limit(self.batch_size * 4)
            ).all()
            payloads = []
            for s in stale:
                rt = self._runtime(session, s.campaign_id)
                payloads.append(
                    rt.payload(
                        s.uuid, s.attempt, s.spec, s.arm_index, s.reason, s.seq, s.device_class
                    )
                )
        if payloads:
            log.info("outbox: publishing %d committed but unpublished trial(s)", len(payloads))
            self._publish(payloads)
        self._expire_leases()
        n = self.step() if cids else 0
        return n + len(payloads)

    def _expire_leases(self) -> None:
        """A trial with no result when its lease runs out (its message was lost, or its worker
        died for good) is re-issued as a new attempt, up to the campaign's max_attempts; then
        it is failed with the reason. A late result of an old attempt is ignored (fenced)."""
        now = _now()
        reissue: list[dict[str, Any]] = []
        with self.Session() as session, session.begin():
            expired = session.execute(
                select(
                    Trial.id,
                    Trial.uuid,
                    Trial.attempt,
                    Trial.campaign_id,
                    Trial.arm_index,
                    Trial.instance_id,
                    Trial.reason,
                    Instance.seq,
                    Instance.spec,
                    Trial.device_class,
                )
                .join(Instance, Instance.id == Trial.instance_id)
                .where(Trial.state.in_(OPEN_STATES), Trial.lease_expires_at < now)
                .limit(self.batch_size)
            ).all()
            for e in expired:
                rt = self._runtime(session, e.campaign_id)
                if e.attempt >= rt.max_attempts:
                    reason = (
                        f"failed: no result after {e.attempt} attempt(s) of "
                        f"{self.settings.lease_seconds:g} s lease each"
                    )
                    session.execute(
                        update(Trial)
                        .where(Trial.id == e.id)
                        .values(state="failed", error=reason, finished_at=now)
                    )
                    session.execute(
                        update(Instance).where(Instance.id == e.instance_id).values(status="failed")
                    )
                    self._event(session, e, "lease_failed", reason, now)
                    if self.bulk.pg:  # waiting clients wake up (see Campaign.wait)
                        session.execute(
                            text("SELECT pg_notify(:c, :i)"),
                            {"c": NOTIFY_CHANNEL, "i": str(e.instance_id)},
                        )
                    rt.in_flight = max(0, rt.in_flight - 1)
                    rt.maybe_pending = True
                    self.metrics.inc("failures")
                    log.warning("trial %s %s", e.uuid, reason)
                    continue
                # Back to ``queued`` and unpublished: the outbox owns it until its publish
                # is recorded, so a failed publish (or marks dropped with a failed
                # transaction) leaves it reachable, never open with no lease.
                session.execute(
                    update(Trial)
                    .where(Trial.id == e.id)
                    .values(
                        attempt=e.attempt + 1,
                        state="queued",
                        published_at=None,
                        lease_expires_at=None,
                    )
                )
                self._event(
                    session, e, "lease_expired", f"re-issued as attempt {e.attempt + 1}", now
                )
                self.metrics.inc("lease_expiries")
                reissue.append(
                    rt.payload(
                        e.uuid, e.attempt + 1, e.spec, e.arm_index, e.reason, e.seq, e.device_class
                    )
                )
        if reissue:
            log.warning("lease expired for %d trial(s); re-issuing as new attempts", len(reissue))
            self._publish(reissue)

    @staticmethod
    def _event(session: Session, e: Any, event: str, detail: str, at: datetime) -> None:
        """Keep a lease expiry for reports (rare: one row per expired attempt)."""
        session.execute(
            insert(TrialEvent).values(
                campaign_id=e.campaign_id,
                trial_id=e.id,
                attempt=e.attempt,
                event=event,
                detail=detail,
                at=at,
            )
        )

    def snapshot_all(self) -> None:
        with self.Session() as session, session.begin():
            for rt in self.runtimes.values():
                if rt.since_snapshot:
                    self._snapshot(session, rt)

    def in_flight_total(self) -> int:
        with self.Session() as session:
            return (
                session.scalar(
                    select(func.count()).select_from(Trial).where(Trial.state.in_(OPEN_STATES))
                )
                or 0
            )


def _async_commit_engine(engine: Engine) -> Engine:
    """A second engine on the same database whose connections commit without waiting for
    the WAL flush (a session setting, so no statement per transaction)."""
    decisions = make_engine(engine.url.render_as_string(hide_password=False), pool_pre_ping=False)

    @event.listens_for(decisions, "connect")
    def _no_flush_wait(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET synchronous_commit TO off")
        dbapi_conn.commit()

    return decisions


def _max_seconds(payload: dict[str, Any]) -> float | None:
    """The campaign's wall-time limit carried in a payload, if it set one."""
    secs = (payload.get("limits") or {}).get("max_seconds")
    if isinstance(secs, int | float) and not isinstance(secs, bool) and secs > 0:
        return float(secs)
    return None


def _time_limits(payload: dict[str, Any]) -> dict[str, float]:
    """A trial past ``max_seconds`` gets SoftTimeLimitExceeded (recorded as timed out); the
    hard limit a little later kills a child that ignores it."""
    secs = _max_seconds(payload)
    if secs is None:
        return {}
    return {"soft_time_limit": secs, "time_limit": secs + 10.0}


def _valid_cost(v: Any) -> bool:
    return (
        isinstance(v, int | float) and not isinstance(v, bool) and v == v and 0 <= v < float("inf")
    )


def _float_or_none(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if f == f and abs(f) != float("inf") else None


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _str_or_none(v: Any, limit: int) -> str | None:
    return str(v)[:limit] if v is not None else None
