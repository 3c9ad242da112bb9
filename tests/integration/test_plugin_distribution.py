"""The example plugin distribution (examples/krylov_plugin, kind ``scipy-gmres``) installed
with pip, as a user would, and run end to end through the real PostgreSQL + RabbitMQ: the
client validates and derives context features through the kind's hooks, a worker process runs
it through its ``runner``, and nothing in this repository names the kind."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from tasks import plugins

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "krylov_plugin"


@pytest.fixture(scope="module")
def krylov_installed() -> None:
    """pip-install the example (no build isolation: setuptools is already here; no deps:
    banditq and scipy are), then let this process see the new entry point."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--force-reinstall",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    importlib.invalidate_caches()
    plugins.refresh()
    assert md.distribution("banditq-krylov").version == "0.1.0"


def test_the_example_plugin_runs_end_to_end(krylov_installed: None, pg_settings: Settings) -> None:
    kinds = subprocess.run(
        [sys.executable, "-m", "app.cli", "kinds"], capture_output=True, text=True, timeout=120
    )
    line = next(ln for ln in kinds.stdout.splitlines() if ln.startswith("scipy-gmres"))
    assert "banditq-krylov 0.1.0" in line
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "gmres",
        "scipy-gmres",
        {"restart": [5, 30], "drop_tol": [1e-1, 1e-3]},
        context_features=["log_peclet"],
        max_in_flight=2,
    )
    secs = client.create_campaign(
        "gmres-seconds",
        "scipy-gmres",
        {"restart": [10], "drop_tol": [1e-2]},
        settings={"cost": "seconds"},
    )
    pecs = [0.0, 10.0, 100.0, 1000.0, 30.0, 300.0]
    with LocalCluster(pg_settings, workers=1) as cluster:
        camp.submit_many([(None, {}, {"m": 24, "peclet": p, "tol": 1e-8}) for p in pecs])
        secs.submit_many([(None, {}, {"m": 16})])
        try:
            camp.wait(timeout=180)
            secs.wait(timeout=180)
        except TimeoutError:
            cluster.check()
            raise
    rows = camp.results()
    assert len(rows) == len(pecs) and all(r["status"] == "succeeded" for r in rows)
    assert all(r["converged"] and r["residual"] < 1e-7 for r in rows)
    assert all(r["cost"] == r["iterations"] for r in rows)  # cost "iterations"
    # the context feature was derived by the kind from each spec at submit time
    logs = sorted(round(r["context"]["log_peclet"], 6) for r in rows)
    assert logs == sorted(round(__import__("math").log10(1 + p), 6) for p in pecs)
    (only,) = secs.results()
    assert only["status"] == "succeeded" and 0 < only["cost"] < 30  # seconds, not iterations
    with client.engine.connect() as c:
        names = c.execute(
            text("SELECT arm_name FROM campaign_arms WHERE campaign = 'gmres' ORDER BY arm_index")
        ).scalars()
        assert list(names) == [
            "gmres(5)+ilu(0.1)",
            "gmres(5)+ilu(0.001)",
            "gmres(30)+ilu(0.1)",
            "gmres(30)+ilu(0.001)",
        ]
    client.close()


def test_bad_input_to_the_plugin_names_the_field(
    krylov_installed: None, embedded_settings: Settings
) -> None:
    client = Client(settings=embedded_settings)
    from tasks.errors import InputError

    with pytest.raises(InputError) as err:
        client.create_campaign("g", "scipy-gmres", [{"restart": 5}])
    assert err.value.field == "arms[0]"
    camp = client.create_campaign("g", "scipy-gmres", [{"restart": 5, "drop_tol": 0.1}])
    with pytest.raises(InputError) as err:
        camp.submit_many([(None, {}, {"m": 24, "peclet": -1.0})])
    assert err.value.field == "peclet"
    assert camp.counts() == {}
    client.close()


def test_trials_go_only_to_workers_that_have_their_kind(pg_settings: Settings) -> None:
    """A worker that runs only `sleep` never receives a `noop` trial (before, it took them
    from the shared queue and failed each as 'invalid input'); a worker with the kind, started
    later, runs them all."""
    from app.dev.local import LocalCluster

    client = Client(settings=pg_settings)
    camp = client.create_campaign("routed", "noop", [{"cost": 1.0}], max_in_flight=4)
    with LocalCluster(pg_settings, workers=1, extra_env={"BANDITQ_WORKER_KINDS": "sleep"}) as a:
        camp.submit_many([(None, {}) for _ in range(6)])
        time.sleep(6.0)
        assert camp.counts().get("done", 0) == 0 and camp.counts().get("failed", 0) == 0
        with LocalCluster(pg_settings, workers=1, scheduler=False) as b:
            camp.wait(timeout=120)
            b.check()
        a.check()
    assert camp.counts() == {"done": 6}
    workers = {r["worker"] for r in camp.results()}
    assert len(workers) == 1
