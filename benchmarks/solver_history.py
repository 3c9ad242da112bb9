"""Write the krylov kind's history (``tasks/kinds/krylov_history.json``) from tables that
``benchmarks/solvers.py --tables DIR`` measured: per family and size, each configuration's
mean log time relative to the family's safe configuration (the kind's default fallback),
and that configuration's mean log time in products of the system's matrix with a vector on
systems whose set-up no earlier step held (``level``: a campaign's first budget).

    python benchmarks/solver_history.py DIR [DIR ...] [--out FILE] [--add]

With ``--add`` the tables extend the history already in ``--out`` (a size it holds for a
family is replaced): a history measured in several sittings, the largest sizes last.

Measure the history on seeds you will not report on: the benchmark's held-out runs must
draw other systems (``--seed``), or its numbers score the prior on its own data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.offline.tables import load_table  # noqa: E402
from app.policies.arm_features import parse_arm_label  # noqa: E402
from tasks.kinds.krylov import DEFAULT_NONSYMMETRIC, DEFAULT_SPD, safe_arm  # noqa: E402
from tasks.kinds.krylov_prior import HISTORY_FILE, arm_label  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders of measured tables (*.npz)")
    ap.add_argument("--out", default=str(HISTORY_FILE), help="the history file to write")
    ap.add_argument(
        "--add", action="store_true", help="extend the history in --out instead of replacing it"
    )
    args = ap.parse_args()
    grid = {arm_label(a): a for a in [*DEFAULT_SPD, *DEFAULT_NONSYMMETRIC]}
    families: dict[str, dict[float, dict[str, float]]] = {}
    refs: dict[str, str] = {}
    levels: dict[str, dict[float, float]] = {}
    sources: list[str] = []
    if args.add and Path(args.out).exists():
        _read_back(json.loads(Path(args.out).read_text()), families, refs, levels, sources)
    for folder in args.folders:
        for path in sorted(Path(folder).glob("*.npz")):
            fam = path.name.split("-")[0]
            tab = load_table(path)
            labels = [arm_label(parse_arm_label(n)) for n in tab.arm_names or []]
            arms = [grid[lab] for lab in labels if lab in grid]
            if len(arms) != len(labels):
                print(f"skipped {path}: arms outside the default grids", file=sys.stderr)
                continue
            fb = safe_arm(arms)
            if fb is None or "log_n" not in tab.context_names:
                continue
            log_n = round(float(tab.contexts[:, tab.context_names.index("log_n")].mean()), 3)
            ratio = np.log(tab.costs / tab.costs[:, [fb]]).mean(axis=0)
            if refs.setdefault(fam, labels[fb]) != labels[fb]:
                print(
                    f"skipped {path}: {fam}'s history is relative to {refs[fam]}", file=sys.stderr
                )
                continue
            families.setdefault(fam, {})[log_n] = dict(zip(labels, ratio.tolist(), strict=True))
            sidecar = path.with_suffix(".json")  # the direct baselines and product times
            side = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            fresh = tab.contexts[:, tab.context_names.index("setup_cached")] == 0
            if "matvec_s" in side and fresh.any():
                per = np.log(tab.costs[fresh, fb] / np.asarray(side["matvec_s"])[fresh])
                levels.setdefault(fam, {})[log_n] = float(per.mean())
            source = f"{path.name} ({tab.T} systems)"
            if source not in sources:  # the same table added again
                sources.append(source)
    out = {
        "about": "mean log(time / the safe configuration's time) per family, size and arm; "
        "level: the safe configuration's mean log(time / one matrix-vector product's) on "
        "systems new to the worker, per size",
        "sources": sources,
        "families": {
            fam: {
                "reference": refs[fam],
                "log_n": sorted(by),
                **(
                    {"level": [round(levels[fam][n], 4) for n in sorted(by)]}
                    if set(levels.get(fam, {})) == set(by)
                    else {}
                ),
                "arms": {
                    lab: [round(by[n][lab], 4) for n in sorted(by)]
                    for lab in sorted(set.intersection(*(set(v) for v in by.values())))
                },
            }
            for fam, by in sorted(families.items())
        },
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}: {len(families)} families, {len(sources)} tables")
    return 0


def _read_back(
    hist: dict[str, Any],
    families: dict[str, dict[float, dict[str, float]]],
    refs: dict[str, str],
    levels: dict[str, dict[float, float]],
    sources: list[str],
) -> None:
    """Fill the accumulators :func:`main` builds from tables with a history file's rows."""
    sources.extend(hist.get("sources", []))
    for fam, v in hist.get("families", {}).items():
        refs[fam] = v["reference"]
        for i, log_n in enumerate(v["log_n"]):
            families.setdefault(fam, {})[log_n] = {lab: m[i] for lab, m in v["arms"].items()}
            if "level" in v:
                levels.setdefault(fam, {})[log_n] = v["level"][i]


if __name__ == "__main__":
    sys.exit(main())
