"""A worker's Prometheus endpoint counts the trials its pool processes ran."""

from __future__ import annotations

import socket
import time
import urllib.request

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_worker_serves_trial_counters_from_its_pool(pg_settings: Settings) -> None:
    port = _free_port()
    client = Client(settings=pg_settings)
    camp = client.create_campaign("wm", "noop", [{"cost": 1.0}], context_features=[])
    env = {"BANDITQ_WORKER_METRICS_PORT": str(port)}
    with LocalCluster(pg_settings, workers=1, extra_env=env):
        camp.submit_many([(None, {}) for _ in range(5)])
        camp.wait(timeout=120)
        deadline = time.monotonic() + 30
        while True:  # the count follows the result message by a moment
            try:
                text = _metrics(port)
                if "banditq_trials_total 5" in text:
                    break
            except OSError:
                text = ""
            assert time.monotonic() < deadline, text
            time.sleep(0.3)
    assert "banditq_trials_succeeded_total 5" in text
    assert "banditq_trials_running 0" in text
    assert "banditq_trial_duration_ms_count 5" in text
