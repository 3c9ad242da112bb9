"""The prepared device script (benchmarks/gpu_check.py, issue 30) on CPU tensors: every
section runs and writes its JSON and Markdown, so that a session lent a GPU spends its few
minutes on figures, not on fixing the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_every_section_on_cpu_tensors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--device",
            "cpu",
            "--quick",
            "--budget",
            "150",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"]["type"] == "cpu" and report["device"]["copy_gbps"] > 0
    for name in ("kernels", "campaigns", "inference", "acceleration"):
        assert "error" not in report[name], (name, report[name])
    kernels = [k for k in report["kernels"] if "ms_per_iter" in k]
    assert {k["dtype"] for k in kernels} == {"float64", "float32"}
    assert all(k["gbps"] > 0 and k["cpu_natural_ms_per_iter"] > 0 for k in kernels)
    for camp in report["campaigns"].values():
        assert camp["succeeded"] == camp["trials"] > 0 and camp["within_tolerance"]
    cells = report["inference"]["cells"]
    assert cells and cells[0]["winner"]  # the first cell always runs to the end
    for c in cells:  # a later one may be cut by the time budget on a busy machine, saying so
        skipped = [a for a in c["arms"].values() if "skipped" in a]
        assert c["winner"] or all(a["skipped"] == "time budget" for a in skipped) and skipped
    assert report["acceleration"]["batches"] > 0
    assert "# GPU check: cpu" in (tmp_path / "gpu_check.md").read_text()
