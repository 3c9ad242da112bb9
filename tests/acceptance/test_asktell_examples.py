"""The ask/tell examples as a user runs them: subprocesses on the embedded default."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("BANDITQ_DATABASE_URL", "BANDITQ_BROKER_URL", "BANDITQ_STORE_URL"):
        env.pop(key, None)
    env["BANDITQ_HOME"] = str(tmp_path / "home")
    return env


def test_scipy_loop_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "scipy_loop.py"), "--quick", "--json"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == 80 and out["unknowns"] == 1600
    assert len(out["fixed_s"]) == 4 and out["best_fixed"] in out["fixed_s"]
    assert sum(out["chosen"].values()) == 80  # one decision per step, each told
    assert out["tuned_s"] > 0 and all(v > 0 for v in out["fixed_s"].values())
    assert "tuned through ask/tell" in proc.stdout


def test_petsc_example_maps_arms_to_options_and_skips_without_petsc(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "petsc_options", ROOT / "examples" / "petsc_options.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.command_line({"ksp": "cg", "pc": "sor", "omega": 1.4}) == (
        "-ksp_type cg -pc_type sor -pc_sor_symmetric -pc_sor_omega 1.4"
    )
    assert mod.petsc_options({"ksp": "cg", "pc": "gamg", "threshold": 0.05}) == {
        "ksp_type": "cg",
        "pc_type": "gamg",
        "pc_gamg_threshold": "0.05",
    }
    assert mod.petsc_options({"ksp": "gmres", "pc": "hypre", "strong_threshold": 0.5}) == {
        "ksp_type": "gmres",
        "pc_type": "hypre",
        "pc_hypre_type": "boomeramg",
        "pc_hypre_boomeramg_strong_threshold": "0.5",
    }
    with pytest.raises(ValueError, match="no PETSc mapping"):
        mod.petsc_options({"ksp": "cg", "pc": "magic"})
    if importlib.util.find_spec("petsc4py") is not None:
        pytest.skip("petsc4py is installed: the example runs for real (not part of make test)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "petsc_options.py")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("skipped: petsc4py is not installed")
    assert "-pc_type gamg -pc_gamg_threshold 0.05" in proc.stdout
