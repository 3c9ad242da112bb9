"""Cross-cutting concerns the scheduler's parts report to, behind one interface: the parts say
what happened (a decision, a result, a heartbeat, a lease expiry), the hooks decide what to
do with it. :class:`MetricsHooks` (the default) keeps Prometheus counters and latency
histograms; tests and embedders may subclass it (or pass their own) to observe a scheduler.

Called from the scheduler thread only.
"""

from __future__ import annotations

from collections import deque

from app.metrics import Metrics


class SchedulerHooks:
    """Every hook is a no-op here; override what you need."""

    def decided(self, n: int, choose_ms: list[float], commit_ms: float) -> None:
        """``n`` decisions committed together (their choice times, the commit's)."""

    def recorded(self, results: int, failures: int) -> None:
        """Results written (``failures`` of them failed)."""

    def duplicate_results(self, n: int) -> None:
        """Redelivered or stale results ignored."""

    def unknown_results(self, n: int) -> None:
        """Results for trials the database does not know (a lost non-durable decision)."""

    def heartbeats(self, n: int) -> None:
        """Leases renewed."""

    def lease_expired(self, reissued: bool) -> None:
        """A trial's lease ran out: re-issued as a new attempt, or failed for good."""

    def policy_error(self) -> None:
        """A policy's choose or update raised (its campaign went on without it)."""

    def quality_violation(self) -> None:
        """A monitored result below its campaign's quality floor."""

    def malformed_message(self) -> None:
        """A message refused (not JSON, or not a protocol object)."""

    def dead_lettered(self, n: int) -> None:
        """Messages refused and kept in ``dead_letters`` (malformed, or failing every try)."""

    def campaign_broken(self) -> None:
        """A campaign marked broken (its settings, plugins or policy failed)."""

    def publish_refused(self) -> None:
        """A trial failed because the broker refused its message every time."""

    def waiting_for_workers(self) -> None:
        """A device-``auto`` decision deferred: no live worker."""

    def gauges(self, in_flight: int, campaigns: int) -> None:
        """After each step: trials in flight, campaigns held in memory."""


class MetricsHooks(SchedulerHooks):
    """Counters and histograms in :class:`app.metrics.Metrics` (served by ``--metrics-port``),
    plus the last 200,000 decision and commit latencies (ms) for benchmarks."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        #: per decision: policy choice plus the commit of its transaction (ms)
        self.decision_latencies: deque[float] = deque(maxlen=200_000)
        #: per transaction that committed decisions: the COMMIT alone (ms)
        self.commit_latencies: deque[float] = deque(maxlen=200_000)

    def decided(self, n: int, choose_ms: list[float], commit_ms: float) -> None:
        self.metrics.inc("decisions", n)
        if not choose_ms:
            return
        self.commit_latencies.append(commit_ms)
        self.metrics.observe("commit_latency_ms", commit_ms)
        for ms in choose_ms:
            self.decision_latencies.append(ms + commit_ms)
            self.metrics.observe("decision_latency_ms", ms + commit_ms)

    def recorded(self, results: int, failures: int) -> None:
        self.metrics.inc("results", results)
        self.metrics.inc("failures", failures)

    def duplicate_results(self, n: int) -> None:
        self.metrics.inc("duplicate_results", n)

    def unknown_results(self, n: int) -> None:
        self.metrics.inc("unknown_results", n)

    def heartbeats(self, n: int) -> None:
        self.metrics.inc("heartbeats", n)

    def lease_expired(self, reissued: bool) -> None:
        self.metrics.inc("lease_expiries" if reissued else "failures")

    def policy_error(self) -> None:
        self.metrics.inc("policy_errors")

    def quality_violation(self) -> None:
        self.metrics.inc("quality_violations")

    def malformed_message(self) -> None:
        self.metrics.inc("malformed_messages")

    def dead_lettered(self, n: int) -> None:
        self.metrics.inc("dead_letters", n)

    def campaign_broken(self) -> None:
        self.metrics.inc("campaigns_broken")

    def publish_refused(self) -> None:
        self.metrics.inc("publish_refused")

    def waiting_for_workers(self) -> None:
        self.metrics.inc("waiting_for_workers")

    def gauges(self, in_flight: int, campaigns: int) -> None:
        self.metrics.set("in_flight", in_flight)
        self.metrics.set("campaigns_loaded", campaigns)
