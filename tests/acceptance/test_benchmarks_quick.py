"""Benchmarks cannot rot: each one's ``--quick`` mode runs from this checkout as a user runs
it (a subprocess, ``python benchmarks/NAME.py``) and its last stdout line parses as JSON.
Seconds to a minute or two each; the figures themselves are the benchmarks' business."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (script, extra arguments): the output folder, where a benchmark takes one, goes to tmp
QUICK = [
    ("policy_speed.py", []),
    ("relax.py", ["--out", "{tmp}"]),
    ("families.py", ["--out", "{tmp}"]),
    ("kernel_speed.py", []),
    ("dataplane.py", []),
    ("asktell.py", ["--skip-optuna"]),
    ("report_coverage.py", []),
    ("solvers.py", []),
    ("zoo.py", ["--out", "{tmp}"]),
    ("dashboard.py", []),
]


@pytest.mark.parametrize(("script", "extra"), QUICK, ids=[s for s, _ in QUICK])
def test_benchmark_quick_mode_runs(
    script: str, extra: list[str], tmp_path: Path, pg_url: str, amqp_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env["BANDITQ_HOME"] = str(tmp_path / "home")
    args = [a.format(tmp=tmp_path) for a in extra]
    out = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick", "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict) and result
