"""The krylov kind's history prior: how the default configurations compare, measured on
families of systems before any campaign runs, as a prior for ``shared-ts``
(:mod:`app.policies.cost_prior`).

``krylov_history.json`` (written by ``benchmarks/solver_history.py`` from the benchmark's
measured tables) holds, per family and size, each configuration's mean log time relative to
the family's safe configuration. From it, per configuration and relative to the campaign's
fallback (any configuration the history measured): the mean across families at the
history's central size (``offset``), the mean change per decade of unknowns (``slope`` on
``log_n``), and the spread across families, widened for a family the history does not hold:
with three or more families, as ``factors`` (the directions in which the configurations
moved together from family to family) and each configuration's own ``sd`` beyond them;
with two, as ``sd`` alone. Ratios, not seconds: they carry across machines better than
times do.
Configurations the history lacks get the fallback's level and the widest spread the
history shows. :func:`fallback_level`: the fallback's own expected log time in products of
the system's matrix with a vector (``policy_config.fallback.level``: the budget of the
decisions made before any result); :func:`campaign_prior`: both, the prior with that level
as its own (for a policy that learns costs in products).

Pure functions; the file is read once per process."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HISTORY_FILE = Path(__file__).with_name("krylov_history.json")
#: the smallest spread an arm's prior gets (log cost): the history's own timing noise
MIN_SD = 0.1


def arm_label(arm: dict[str, Any]) -> str:
    """A configuration as one canonical string (keys sorted, numbers as floats)."""

    def fmt(v: Any) -> str:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return repr(float(v))
        return str(v)

    return ",".join(f"{k}={fmt(arm[k])}" for k in sorted(arm))


@functools.cache
def load_history(path: str = str(HISTORY_FILE)) -> dict[str, Any]:
    """The history file's contents ({} when absent)."""
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def _line(L: np.ndarray, y: np.ndarray, center: float) -> tuple[float, float | None]:
    """``y`` fitted over ``L`` (log_n): (value at ``center``, slope per decade), the slope
    None where the points hold one size only (then the value is their mean)."""
    if len(L) >= 2 and np.ptp(L) > 0:
        slope, icpt = np.polyfit(L - center, y, 1)
        return float(icpt), float(slope)
    return float(np.mean(y)), None


def _spread(values: Any) -> float:
    """The predictive spread of one more family's value, from two or more families' values:
    their between-family variance widened by (1 + 1/F)."""
    v = np.asarray(values, float)
    return math.sqrt(float(np.var(v, ddof=1)) * (1.0 + 1.0 / len(v)))


def _per_arm(history: dict[str, Any], reference: str, exclude: Sequence[str]) -> dict[str, Any]:
    """Per family that measured ``reference`` and is not in ``exclude``: label -> (its log
    cost above ``reference``'s at the centre, its slope or None); the same per label across
    families; and the centre."""
    families = [
        v
        for f, v in history.get("families", {}).items()
        if f not in exclude and reference in v.get("arms", {})
    ]
    sizes = [x for v in families for x in v["log_n"]]
    center = float(np.mean(sizes)) if sizes else 0.0
    by_family: list[dict[str, tuple[float, float | None]]] = []
    for fam in families:
        L = np.asarray(fam["log_n"], float)
        base = np.asarray(fam["arms"][reference], float)
        by_family.append(
            {
                label: _line(L, np.asarray(means, float) - base, center)
                for label, means in fam["arms"].items()
            }
        )
    out: dict[str, list[tuple[float, float | None]]] = {}
    for here in by_family:
        for label, row in here.items():
            out.setdefault(label, []).append(row)
    return {"arms": out, "center": center, "families": len(families), "by_family": by_family}


def _factors(
    by_family: list[dict[str, tuple[float, float | None]]], labels: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The directions in which the arms' offsets moved together across the history's
    families, and what each arm's offset does beyond them: (K, r) factors (the between-family
    covariance's square root, widened for one more family as the spreads are) and (K,) the
    variance left over, NaN for arms some family lacks (they get no factors). The leftover
    variance is measured leaving each family out in turn: how far its offsets sit from the
    best combination of the others' directions, i.e. how a family the history lacks may
    differ in ways no other family did."""
    K = len(labels)
    have = [j for j, lab in enumerate(labels) if all(lab in f for f in by_family)]
    F = len(by_family)
    loadings, rest = np.zeros((K, 0)), np.full(K, np.nan)
    if F < 3 or len(have) < 2:
        return loadings, rest
    A = np.array([[f[labels[j]][0] for j in have] for f in by_family])  # (F, K') offsets
    dev = A - A.mean(axis=0)
    _U, S, Vt = np.linalg.svd(dev, full_matrices=False)
    tiny = 1e-9 * max(float(S[0]), 1e-300)  # directions of no spread (rank F - 1 at most)
    r = int(np.count_nonzero(tiny <= S))
    loadings = np.zeros((K, r))
    loadings[have] = (Vt[:r].T * S[:r]) * math.sqrt((1.0 + 1.0 / F) / (F - 1))
    left = np.zeros(len(have))
    for f in range(F):
        others = np.delete(A, f, axis=0)
        mid = others.mean(axis=0)
        x = A[f] - mid
        basis = (others - mid).T  # (K', F - 1)
        coef = np.linalg.lstsq(basis, x, rcond=None)[0]
        left += (x - basis @ coef) ** 2 / F
    rest[have] = left
    return loadings, rest


def history_prior(
    arms: Sequence[dict[str, Any]],
    features: Sequence[str],
    fallback: int,
    exclude: Sequence[str] = (),
    history: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``policy_config.prior`` for ``arms`` (relative to arm ``fallback``), or None when none
    of the history's families (less ``exclude``) measured the fallback. Measured by one
    family only, a configuration's spread is the typical spread of a configuration across
    the history's other families (:func:`typical_spread`); None when there is none."""
    hist = load_history() if history is None else history
    labels = [arm_label(a) for a in arms]
    stats = _per_arm(hist, labels[fallback], exclude)
    one = typical_spread(hist, exclude) if stats["families"] == 1 else None
    if stats["families"] < 2 and one is None:
        return None

    def summary(label: str) -> tuple[float, float, float] | None:
        rows = stats["arms"].get(label)
        if rows and len(rows) == 1 and one is not None:
            return rows[0][0], rows[0][1] or 0.0, one
        if not rows or len(rows) < 2:
            return None
        alphas = np.array([a for a, _s in rows])
        slopes = [s for _a, s in rows if s is not None]
        sd = _spread(alphas)
        return float(alphas.mean()), float(np.mean(slopes)) if slopes else 0.0, max(sd, MIN_SD)

    known = {lab: summary(lab) for lab in set(labels)}
    widest = max(s[2] for s in known.values() if s is not None)
    factors, rest = _factors(stats["by_family"], labels)
    offset, sd, slope = [], [], np.zeros((len(arms), len(features)))
    col = list(features).index("log_n") if "log_n" in features else None
    for i, lab in enumerate(labels):
        s = known[lab]
        offset.append(0.0 if s is None else s[0])
        if s is None:
            sd.append(widest)
        else:  # with factors, the arm's own spread is what they leave over
            sd.append(s[2] if np.isnan(rest[i]) else max(math.sqrt(rest[i]), MIN_SD))
        if col is not None and s is not None:
            slope[i, col] = s[1]
    center = [stats["center"] if f == "log_n" else 0.0 for f in features]
    out = {"offset": offset, "sd": sd, "slope": slope.tolist(), "center": center}
    if factors.shape[1]:
        out["factors"] = factors.tolist()
    return out


def typical_spread(history: dict[str, Any], exclude: Sequence[str] = ()) -> float | None:
    """How far a configuration's log time relative to its family's reference moves from one
    family to another, typically: per configuration measured by two or more of the history's
    families (less ``exclude``; each relative to its own reference, at the history's centre
    size), the predictive spread for one more family; the median over configurations. None
    when no configuration was measured twice. The spread for an arm set only one family
    measured (the non-symmetric grid): a guess from how other families' configurations
    varied, not from its own."""
    by_label: dict[str, list[float]] = {}
    fams = [(f, v) for f, v in history.get("families", {}).items() if f not in exclude]
    sizes = [x for _f, v in fams for x in v["log_n"]]
    center = float(np.mean(sizes)) if sizes else 0.0
    for _f, v in fams:
        ref = v.get("reference")
        if ref not in v.get("arms", {}):
            continue
        L, base = np.asarray(v["log_n"], float), np.asarray(v["arms"][ref], float)
        for label, means in v["arms"].items():
            if label != ref:
                by_label.setdefault(label, []).append(
                    _line(L, np.asarray(means, float) - base, center)[0]
                )
    spreads = [_spread(a) for a in by_label.values() if len(a) >= 2]
    return max(float(np.median(spreads)), MIN_SD) if spreads else None


def _level_fits(
    arms: Sequence[dict[str, Any]],
    features: Sequence[str],
    fallback: int,
    exclude: Sequence[str],
    history: dict[str, Any] | None,
) -> tuple[dict[str, Any], float] | None:
    """(the level, its spread across families) for arm ``fallback``; None when no family
    measured it with its reference's level."""
    hist = load_history() if history is None else history
    label = arm_label(arms[fallback])
    rows = [
        (np.asarray(v["log_n"], float), np.asarray(v["level"], float) + v["arms"][label])
        for f, v in hist.get("families", {}).items()
        if f not in exclude and "level" in v and label in v.get("arms", {})
    ]
    if not rows:
        return None
    center = float(np.mean(np.concatenate([L for L, _y in rows])))
    fits = [_line(L, y, center) for L, y in rows]
    offsets = np.array([f[0] for f in fits])
    slope = float(np.mean([f[1] or 0.0 for f in fits]))
    col = list(features).index("log_n") if "log_n" in features else None
    level = {
        "offset": float(offsets.mean()),
        "slope": [slope if i == col else 0.0 for i in range(len(features))],
        "center": [center if i == col else 0.0 for i in range(len(features))],
    }
    # as an arm's spread: the predictive spread for one more family; with one family none
    # can be measured, so a factor of e either way
    spread = _spread(offsets) if len(offsets) > 1 else 1.0
    return level, max(spread, MIN_SD)


def fallback_level(
    arms: Sequence[dict[str, Any]],
    features: Sequence[str],
    fallback: int,
    exclude: Sequence[str] = (),
    history: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``policy_config.fallback.level`` for arm ``fallback``: per family (less ``exclude``)
    that measured it and its reference's level, the reference's log time in products plus
    the fallback's log time relative to the reference, fitted over ``log_n`` (offset at the
    centre, slope per decade) and averaged across families; None when no family did."""
    got = _level_fits(arms, features, fallback, exclude, history)
    return None if got is None else got[0]


def campaign_prior(
    arms: Sequence[dict[str, Any]],
    features: Sequence[str],
    fallback: int,
    exclude: Sequence[str] = (),
    history: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(``policy_config.prior``, ``policy_config.fallback.level``) for a campaign whose
    policy learns costs in products (``cost_unit="matvec"``): the prior carries the level
    as its own (``prior.level``, with the spread of the families' levels as its sd), so
    that the policy's estimates are in products from its first decision. (None, None)
    without a prior; (prior, None) without a level."""
    prior = history_prior(arms, features, fallback, exclude, history)
    got = _level_fits(arms, features, fallback, exclude, history)
    if prior is None or got is None:
        return prior, None
    level, spread = got
    return {**prior, "level": {**level, "sd": spread}}, level
