"""Settings from BANDITQ_* variables, and back for child processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ENV_VARS, Settings
from app.dev.local import LocalCluster
from app.errors import ConfigError


def test_to_env_rebuilds_every_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://u@h/d",
        snapshot_seconds=0.5,
        lease_seconds=3.0,
        queue_type="quorum",
        durable_decisions=1,
        worker_metrics_port=9101,
    )
    env = s.to_env()
    assert set(env) == set(ENV_VARS)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Settings.from_env() == s
    # the embedded cluster's children get all of them
    assert {k: LocalCluster(s).env()[k] for k in env} == env


def test_a_malformed_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDITQ_LEASE_SECONDS", "soon")
    with pytest.raises(ConfigError, match="BANDITQ_LEASE_SECONDS"):
        Settings.from_env()
