"""Prometheus metrics: the scheduler's counters over HTTP, a worker's counters shared by its
pool processes."""

from __future__ import annotations

import multiprocessing
import urllib.error
import urllib.request

import pytest

from app.client import Client
from app.config import Settings
from tests.inline import InlineScheduler
from workers import metrics as worker_metrics
from workers.metrics import WorkerMetrics


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


def test_scheduler_serves_counters_in_flight_and_latency_histogram(
    embedded_settings: Settings,
) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "m", "noop", [{"cost": 1.0}, {"cost": 2.0}], context_features=["x"], max_in_flight=3
    )
    camp.submit_many([(None, {"x": float(i)}) for i in range(7)])
    sch = InlineScheduler(embedded_settings)
    server = sch.metrics.serve(0)
    try:
        port = server.server_address[1]
        sch.sweep()  # decides the first 3, nothing finished yet
        _status, text = _get(port, "/metrics")
        assert _value(text, "banditq_decisions_total") == 3
        assert _value(text, "banditq_in_flight") == 3
        sch.run_until_idle()
        status, text = _get(port, "/metrics")
        assert status == 200
        assert _value(text, "banditq_decisions_total") == 7
        assert _value(text, "banditq_results_total") == 7
        assert _value(text, "banditq_in_flight") == 0
        assert _value(text, "banditq_decision_latency_ms_count") == 7
        assert 'banditq_decision_latency_ms_bucket{le="+Inf"} 7' in text
        assert _get(port, "/")[0] == 404
    finally:
        server.shutdown()


def _child(m: WorkerMetrics) -> None:
    m.started()
    m.finished(True, 0.002)
    m.started()
    m.finished(False, 0.2)


def test_worker_counters_are_shared_by_forked_pool_processes() -> None:
    m = WorkerMetrics()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child, args=(m,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    m.started()  # one running in the parent
    snap = m.snapshot()
    assert snap.counters == {"trials": 4, "trials_succeeded": 2, "trials_failed": 2}
    assert snap.gauges == {"trials_running": 1}
    text = m.render()
    assert "banditq_trial_duration_ms_count 4" in text
    assert 'banditq_trial_duration_ms_bucket{le="5"} 2' in text  # the 2 ms trials
    server = m.serve(0)
    try:
        status, body = _get(server.server_address[1], "/metrics")
        assert status == 200 and "banditq_trials_total 4" in body
    finally:
        server.shutdown()


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_worker_signals_count_each_trial_by_its_status(status: str) -> None:
    m = worker_metrics.install()
    before = m.snapshot().counters
    worker_metrics._prerun(task_id="t1")
    assert m.snapshot().gauges["trials_running"] >= 1
    worker_metrics._postrun(task_id="t1", retval=status)
    after = m.snapshot().counters
    assert after["trials"] == before["trials"] + 1
    assert after[f"trials_{status}"] == before[f"trials_{status}"] + 1


def test_trial_duration_buckets_reach_hours() -> None:
    """Trials of seconds, minutes and hours land in finite buckets, not all in +Inf."""
    m = WorkerMetrics()
    for seconds in (0.002, 3.0, 120.0, 5400.0):
        m.started()
        m.finished(True, seconds)
    text = m.render()
    assert 'banditq_trial_duration_ms_bucket{le="5000"} 2' in text  # 2 ms and 3 s
    assert 'banditq_trial_duration_ms_bucket{le="300000"} 3' in text  # + 2 min
    assert 'banditq_trial_duration_ms_bucket{le="1.44e+07"} 4' in text  # + 1.5 h
    assert 'banditq_trial_duration_ms_bucket{le="+Inf"} 4' in text
