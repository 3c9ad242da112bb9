"""``examples/heat2d.py`` as a user runs it: a subprocess on the embedded default (no
servers), every step chained to the previous one on the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_heat_example_runs_and_reports_its_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env["BANDITQ_HOME"] = str(tmp_path / "home")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "heat2d.py"), "--m", "12", "--steps", "40"]
        + ["--sample", "10", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["steps"] == 40 and report["n"] == 144
    assert set(report["fixed_iterations"]) == {"1.0", "1.3", "1.5", "1.75", "1.95"}
    for w, v in report["fixed_iterations"].items():  # said plainly, per fixed omega
        assert report["beat_fixed"][w] == (report["total_iterations"] < v)
        verdict = "banditq beat it" if report["beat_fixed"][w] else "did not beat it"
        assert any(f"fixed omega {w}" in ln and verdict in ln for ln in out.stderr.splitlines())
    assert report["total_iterations"] > 40  # every step ran at least one iteration
    assert report["cg_iterations"] > 0 and report["sampled_steps"] == 4
    assert 0.0 < report["solve_s"] < report["wall_s"]
    assert 0.0 <= report["overhead_share"] < 1.0


def test_a_killed_parent_takes_its_local_cluster_with_it(tmp_path: Path) -> None:
    """A script that starts a LocalCluster and dies without running its exit (SIGKILL,
    ``timeout``) leaves no scheduler or worker behind: they stop within seconds."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env["BANDITQ_HOME"] = str(tmp_path / "home")
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1])\n"
        "from app.config import Settings\n"
        "from app.dev.local import LocalCluster\n"
        "c = LocalCluster(Settings.from_env(), workers=1).__enter__()\n"
        "c.wait_ready()\n"
        "print(' '.join(str(p.pid) for p in c.procs), flush=True)\n"
        "os._exit(0)  # no __exit__: as if killed\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 60
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in pids if _running(p)]
    assert not alive, f"still running: {alive}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
