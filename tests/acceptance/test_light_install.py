"""``pip install banditq`` with no extras: the client, the scheduler, the CLI and the report in
an environment that has neither torch nor numba (nor pyamg or transformers). A fresh virtual
environment, the package installed from this checkout as a user would, then an ask/tell
campaign decided by that environment's own ``banditq scheduler`` process, a solver campaign's
submit (validated and decided; no worker here to run it), and ``banditq report --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numba", "llvmlite", "pyamg", "transformers")

SCRIPT = r"""
import importlib.util, subprocess, sys, time
HEAVY = {heavy!r}
assert all(importlib.util.find_spec(m) is None for m in HEAVY), "a heavy package is installed"
from app import Client, LinearSystem

client = Client()
camp = client.create_campaign("light", "external", arms={{"omega": [1.0, 1.5]}},
                              context_features=["c"])
scheduler = subprocess.Popen([sys.executable, "-m", "app.cli", "scheduler"])
try:
    for i in range(20):
        d = camp.ask({{"c": i / 20}}, timeout=120)
        camp.tell(d, cost=1.0 + d.arm["omega"] * i / 20)
    sor = client.create_campaign("light-sor", "sor", arms={{"omega": [1.0, 1.5]}},
                                 context_features=["shift"])
    sor.submit(LinearSystem.laplace2d(m=8, shift=0.1), context={{"shift": 0.1}})
    deadline = time.monotonic() + 120
    while not sor.status()["trials"] and time.monotonic() < deadline:
        time.sleep(0.2)  # decided by the scheduler, queued for a worker
    assert sor.status()["trials"], "the scheduler did not decide the solver campaign's instance"
    deadline = time.monotonic() + 60
    while camp.status()["policy_updates"] < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert camp.status()["policy_updates"] == 20, camp.status()
finally:
    scheduler.terminate()
    scheduler.wait(60)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
assert not loaded, loaded
print("light ok")
"""


def _site_bytes(venv: Path) -> int:
    return sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def light_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("light") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    t0 = time.monotonic()
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    # the figures the install guide quotes come from this line
    print(f"light install: {time.monotonic() - t0:.0f} s, {_site_bytes(venv) / 2**20:.0f} MiB")
    return venv


def test_client_scheduler_and_report_run_without_torch_or_numba(
    light_env: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITQ_", "PYTHON"))}
    env["BANDITQ_HOME"] = str(tmp_path / "home")
    python = str(light_env / "bin" / "python")
    out = subprocess.run(
        [python, "-c", SCRIPT.format(heavy=HEAVY)],
        cwd=tmp_path,  # not the checkout: the installed package is what runs
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0 and "light ok" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
    report = subprocess.run(
        [python, "-m", "app.cli", "report", "light", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    summary = json.loads(report.stdout)
    assert summary["trials"] == 20
