"""Settings from BANDITQ_* variables, and back for child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ENV_VARS, Settings
from app.dev.local import LocalCluster
from tasks.errors import ConfigError


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


def test_worker_blas_threads_cap_a_pool_process() -> None:
    """What a pool process runs after the fork (workers.daemon._limit_blas): every BLAS
    library loaded (numpy's, scipy's) capped, and the variables set for later ones."""
    code = (
        "import json, os, numpy\n"
        "os.environ['BANDITQ_WORKER_BLAS_THREADS'] = '1'\n"
        "from workers.daemon import _limit_blas\n"
        "_limit_blas()\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(json.dumps([blas, os.environ['OPENBLAS_NUM_THREADS']]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    blas, var = json.loads(out.stdout.strip().splitlines()[-1])
    assert blas and set(blas) == {1}
    assert var == "1"


def test_worker_blas_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().worker_blas_threads == 1
    monkeypatch.setenv("BANDITQ_WORKER_BLAS_THREADS", "4")
    assert Settings.from_env().worker_blas_threads == 4
    monkeypatch.setenv("BANDITQ_WORKER_BLAS_THREADS", "many")
    with pytest.raises(ConfigError, match="BANDITQ_WORKER_BLAS_THREADS"):
        Settings.from_env()


def test_the_embedded_home_defaults_to_a_per_user_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not the current folder: a command run elsewhere must open the same database."""
    monkeypatch.delenv("BANDITQ_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.home == tmp_path / "data" / "banditq"
    assert str(tmp_path / "data" / "banditq") in settings.database_url
    monkeypatch.setenv("BANDITQ_HOME", "here")
    assert Settings.from_env().home == tmp_path / "here"
