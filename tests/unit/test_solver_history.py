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
from tasks.kinds.krylov_prior import arm_label, fallback_level, history_prior

ROOT = Path(__file__).resolve().parents[2]


def _table(path: Path, log_n: float, ratios: list[float], matvec_s: float | None = None) -> None:
    """Three systems, the arms DEFAULT_SPD[:3] plus the safe one (cost 1 ms x 1, 2, 4);
    with ``matvec_s``, the sidecar's product times (the third system repeats the second's
    matrix: its set-up was held, so it is no sample of the level)."""
    safe = safe_arm(DEFAULT_SPD)
    assert safe is not None
    arms = [*DEFAULT_SPD[:3], DEFAULT_SPD[safe]]
    labels = [",".join(f"{k}={v}" for k, v in a.items()) for a in arms]
    ctx = np.zeros((3, len(DEFAULT_FEATURES)))
    ctx[:, list(DEFAULT_FEATURES).index("log_n")] = log_n
    ctx[2, list(DEFAULT_FEATURES).index("setup_cached")] = 1.0
    base = 1e-3 * np.array([[1.0], [2.0], [4.0]])
    costs = base * np.array([*ratios, 1.0])[None, :]
    CostTable(ctx, np.arange(4.0), costs, list(DEFAULT_FEATURES), labels).save(path)
    if matvec_s is not None:
        path.with_suffix(".json").write_text(json.dumps({"matvec_s": [matvec_s] * 3}))


def test_tables_become_a_history_the_prior_reads(tmp_path: Path) -> None:
    for fam, (r_small, r_big) in {"fa": (0.5, 1.0), "fb": (0.25, 0.5)}.items():
        # fa's product times: 1e-5 s at 10^3 unknowns, 1e-3 s at 10^5
        small, big = (1e-5, 1e-3) if fam == "fa" else (None, None)
        _table(tmp_path / f"{fam}-T3-n1000-seed1.npz", 3.0, [r_small, 2.0, 1.0], small)
        _table(tmp_path / f"{fam}-T3-n100000-seed1.npz", 5.0, [r_big, 2.0, 1.0], big)
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
    # the safe configuration's level: fa's fresh systems (1 and 2 ms) in products of 1e-5 s
    # at 10^3 and of 1e-3 s at 10^5; fb timed no products
    assert "level" not in hist["families"]["fb"]
    want = [np.mean(np.log([1e-3 / 1e-5, 2e-3 / 1e-5])), np.mean(np.log([1.0, 2.0]))]
    assert fa["level"] == pytest.approx(want, abs=1e-3)
    level = fallback_level(arms, list(DEFAULT_FEATURES), 3, history=hist)
    assert level is not None
    col = list(DEFAULT_FEATURES).index("log_n")
    assert level["center"][col] == pytest.approx(4.0)
    assert level["offset"] == pytest.approx(np.mean(want), abs=1e-3)
    assert level["slope"][col] == pytest.approx((want[1] - want[0]) / 2, abs=1e-3)
    # relative to another fallback: its log time above the safe one's added (arm 1: 2x)
    other = fallback_level(arms, list(DEFAULT_FEATURES), 1, history=hist)
    assert other is not None and other["offset"] == pytest.approx(
        level["offset"] + np.log(2), abs=1e-3
    )
    assert fallback_level(arms, list(DEFAULT_FEATURES), 3, exclude=["fa"], history=hist) is None


def test_add_extends_the_history_size_by_size(tmp_path: Path) -> None:
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    for fam, r in {"fa": 0.5, "fb": 0.25}.items():
        _table(first / f"{fam}-T3-n1000-seed1.npz", 3.0, [r, 2.0, 1.0], 1e-5)
        _table(later / f"{fam}-T3-n100000-seed1.npz", 5.0, [2 * r, 2.0, 1.0], 1e-3)
    out = tmp_path / "history.json"

    def write(folder: Path, *extra: str) -> dict[str, object]:
        cmd = [sys.executable, "benchmarks/solver_history.py", str(folder), "--out", str(out)]
        subprocess.run([*cmd, *extra], cwd=ROOT, check=True, capture_output=True)
        return json.loads(out.read_text())  # type: ignore[no-any-return]

    write(first)
    alone = write(later)  # without --add the file holds the later tables only
    assert alone["families"]["fa"]["log_n"] == [5.0]  # type: ignore[index]
    write(first)
    both = write(later, "--add")
    fa = both["families"]["fa"]  # type: ignore[index]
    assert fa["log_n"] == [3.0, 5.0]
    assert fa["arms"][arm_label(DEFAULT_SPD[0])] == pytest.approx(
        [np.log(0.5), np.log(1.0)], abs=1e-3
    )
    assert len(fa["level"]) == 2
    assert len(both["sources"]) == 4  # type: ignore[arg-type]
    # adding the same tables again replaces their sizes' rows: nothing doubles
    again = write(later, "--add")
    assert again["families"]["fa"]["log_n"] == [3.0, 5.0]  # type: ignore[index]
    assert again["sources"] == both["sources"]
