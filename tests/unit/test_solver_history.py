"""benchmarks/solver_history.py: measured tables -> the krylov kind's history file, which
history_prior reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.offline.tables import CostTable
from tasks.kinds.krylov import DEFAULT_FEATURES, DEFAULT_SPD, safe_arm
from tasks.kinds.krylov_prior import history_prior

ROOT = Path(__file__).resolve().parents[2]


def _table(path: Path, log_n: float, ratios: list[float]) -> None:
    """Three systems, the arms DEFAULT_SPD[:3] plus the safe one (cost 1 ms x 1, 2, 4)."""
    safe = safe_arm(DEFAULT_SPD)
    assert safe is not None
    arms = [*DEFAULT_SPD[:3], DEFAULT_SPD[safe]]
    labels = [",".join(f"{k}={v}" for k, v in a.items()) for a in arms]
    ctx = np.zeros((3, len(DEFAULT_FEATURES)))
    ctx[:, list(DEFAULT_FEATURES).index("log_n")] = log_n
    base = 1e-3 * np.array([[1.0], [2.0], [4.0]])
    costs = base * np.array([*ratios, 1.0])[None, :]
    CostTable(ctx, np.arange(4.0), costs, list(DEFAULT_FEATURES), labels).save(path)


def test_tables_become_a_history_the_prior_reads(tmp_path: Path) -> None:
    for fam, (r_small, r_big) in {"fa": (0.5, 1.0), "fb": (0.25, 0.5)}.items():
        _table(tmp_path / f"{fam}-T3-n1000-seed1.npz", 3.0, [r_small, 2.0, 1.0])
        _table(tmp_path / f"{fam}-T3-n100000-seed1.npz", 5.0, [r_big, 2.0, 1.0])
    out = tmp_path / "history.json"
    subprocess.run(
        [sys.executable, "benchmarks/solver_history.py", str(tmp_path), "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    hist = json.loads(out.read_text())
    assert set(hist["families"]) == {"fa", "fb"}
    fa = hist["families"]["fa"]
    assert fa["log_n"] == [3.0, 5.0]
    first = [lab for lab in fa["arms"] if lab.startswith("method=")][0]
    assert len(fa["arms"]) == 4 and len(fa["arms"][first]) == 2
    safe = safe_arm(DEFAULT_SPD)
    assert safe is not None
    arms = [*DEFAULT_SPD[:3], DEFAULT_SPD[safe]]
    prior = history_prior(arms, list(DEFAULT_FEATURES), 3, history=hist)
    assert prior is not None
    # arm 0: 0.5x and 0.25x the safe one at 10^3, twice that at 10^5: at the centre (10^4)
    # the families' mean of their log ratios there, and log 2 per two decades
    centre = np.mean([np.log(0.5 * 1.0) / 2, np.log(0.25 * 0.5) / 2])
    assert prior["offset"][0] == pytest.approx(centre, abs=1e-3)
    assert prior["slope"][0][list(DEFAULT_FEATURES).index("log_n")] == pytest.approx(
        np.log(2.0) / 2, abs=1e-3
    )
    assert prior["offset"][1] == pytest.approx(np.log(2.0), abs=1e-3)
    assert prior["offset"][3] == 0.0
