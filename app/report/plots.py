"""Matplotlib figures of one campaign (``PLOTS`` by name), from :class:`ReportData`.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state): safe to build in several
threads at once, and nothing is shown unless the caller does. Every figure has a title and
axis units; an empty campaign gives a figure that says so rather than an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

from app.report.data import ReportData
from app.report.estimates import MIN_TRUSTED_PROPENSITY, Counterfactual, counterfactuals

MAX_POINTS = 4000
COLORS = {"exploit": "tab:blue", "explore": "tab:orange"}


def _fig(title: str, ncols: int = 1, width: float = 7.5) -> tuple[Figure, list]:
    # Fixed margins: a layout engine (constrained, tight) doubles the time to render.
    fig = Figure(figsize=(width if ncols == 1 else 3.6 * ncols, 3.8))
    fig.subplots_adjust(
        left=0.1 if ncols == 1 else 0.07, right=0.98, top=0.88, bottom=0.2, wspace=0.3
    )
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    fig.suptitle(title)
    return fig, axes


def _empty(ax: object, what: str = "no results yet") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="gray")  # type: ignore[attr-defined]


def _times(x: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), UTC) for t in x]


def _time_axis(ax: Any, t: list[datetime]) -> None:
    if t and max(t) - min(t) < timedelta(seconds=10):  # the locator needs a span
        ax.set_xlim(min(t) - timedelta(seconds=30), max(t) + timedelta(seconds=30))
    locator = mdates.AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


def _thin(n: int, cap: int = MAX_POINTS) -> np.ndarray:
    return np.arange(n) if n <= cap else np.linspace(0, n - 1, cap).astype(np.int64)


def cost(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Cumulative cost of the campaign and of always playing the baseline or the best fixed
    arm (doubly robust estimates with a 95% band, or exact for a full-information table)."""
    fig, (ax,) = _fig(f"Cumulative cost: {data.name}")
    cum = data.cumulative
    if len(cum.x) == 0:
        _empty(ax)
        return fig
    ax.plot(cum.x, cum.values["cost"], label=f"policy ({data.overview['policy']})", lw=2)
    cf = cf or counterfactuals(data)
    seq = data.rounds["seq"]
    if len(seq):
        scale = data.n_succeeded / len(seq)
        steps = np.arange(1, len(seq) + 1)
        how = "exact" if cf.exact else "DR estimate"
        base, best = data.baseline_arm(), cf.best_fixed()
        for arm, label, style in ((base, "baseline", "--"), (best, "best fixed", ":")):
            if arm is None or not cf.enough(arm):
                continue  # the summary's notes say why
            est = scale * np.cumsum(cf.terms[:, arm])
            ax.plot(seq + 1, est, style, label=f"{label} {data.arm_labels[arm]} ({how})")
            if not cf.exact:
                half = 1.96 * scale * np.sqrt(steps) * cf.sd[arm]
                ax.fill_between(seq + 1, est - half, est + half, alpha=0.15)
            if arm == best and best == base:
                break
        if cf.exact:
            ax.plot(
                seq + 1,
                scale * np.cumsum(cf.terms.min(axis=1)),
                lw=1,
                color="gray",
                label="per-instance oracle (exact)",
            )
    ax.set_xlabel("instance (sequence number)")
    ax.set_ylabel("cumulative cost (the kind's unit)")
    ax.legend(fontsize=8)
    return fig


def _arm_axis(data: ReportData) -> tuple[np.ndarray, str]:
    pos = data.positions()
    if pos is not None:
        key = next(iter(data.arms[0]["arm"]))
        return pos, f"arm: {key}"
    return np.arange(len(data.arms), dtype=float), "arm (index)"


def arms(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Arm chosen against each context feature (others at their median), with the policy's
    current best arm as a line."""
    feats = data.features[:4]
    fig, axes = _fig(f"Arm chosen against context: {data.name}", max(1, len(feats)))
    r = data.rounds
    yval, ylabel = _arm_axis(data)
    if len(r["seq"]) == 0:
        _empty(axes[0])
        return fig
    idx = _thin(len(r["seq"]))
    y = yval[r["arm"][idx]]
    reasons = r["reason"][idx]
    pol = data.policy()
    for j, ax in enumerate(axes):
        x = r["context"][idx, j] if feats else r["seq"][idx]
        for reason in sorted(set(reasons)):
            m = reasons == reason
            ax.scatter(x[m], y[m], s=6, alpha=0.5, color=COLORS.get(reason), label=reason)
        if pol is not None and feats:
            ctx = r["context"]
            grid = np.linspace(ctx[:, j].min(), ctx[:, j].max(), 40)
            base = np.median(ctx, axis=0)
            best = []
            for g in grid:
                point = base.copy()
                point[j] = g
                best.append(yval[pol.best_arm(point)])
            ax.plot(grid, best, color="black", lw=2, label="policy's best arm now")
        ax.set_xlabel(f"context: {feats[j]}" if feats else "instance (sequence number)")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7, markerscale=2)
    return fig


def cost_by_arm(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Distribution of the observed cost per arm (sampled rounds), with trial counts."""
    fig, (ax,) = _fig(f"Cost per arm: {data.name}", width=max(7.5, 0.25 * len(data.arms)))
    r = data.rounds
    played = [a for a in range(len(data.arms)) if (r["arm"] == a).any()]
    if not played:
        _empty(ax)
        return fig
    ax.boxplot([r["cost"][r["arm"] == a] for a in played], showfliers=False)
    ax.set_xticks(
        range(1, len(played) + 1),
        [f"{data.arm_labels[a]}\n(n={int(data.per_arm['n'][a])})" for a in played],
        rotation=90,
        fontsize=7,
    )
    ax.set_xlabel("arm (trials)")
    ax.set_ylabel("cost (the kind's unit)")
    fig.subplots_adjust(bottom=0.38)
    return fig


def reasons(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Share of decisions by reason (explore, exploit, guard, quality probe, fallback) over
    the sequence."""
    fig, (ax,) = _fig(f"Decisions by reason: {data.name}")
    s = data.reasons
    if len(s.x) == 0:
        _empty(ax, "no decisions yet")
        return fig
    keys = sorted(s.values)
    total = np.maximum(sum(s.values[k] for k in keys), 1.0)
    ax.stackplot(
        s.x,
        [s.values[k] / total for k in keys],
        labels=keys,
        step="post",
        colors=[COLORS[k] for k in keys] if all(k in COLORS for k in keys) else None,
    )
    ax.set_xlabel("instance (sequence number)")
    ax.set_ylabel("share of decisions")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def propensity(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Histogram of logged propensities; below the marked threshold off-policy estimates
    are not to be trusted."""
    fig, (ax,) = _fig(f"Propensities: {data.name}")
    p = data.rounds["propensity"]
    if len(p) == 0:
        _empty(ax)
        return fig
    ax.hist(p, bins=np.logspace(-4, 0, 41))
    ax.set_xscale("log")
    ax.axvline(
        MIN_TRUSTED_PROPENSITY,
        color="red",
        ls="--",
        label=f"OPE warning below {MIN_TRUSTED_PROPENSITY}",
    )
    ax.set_xlabel("propensity of the chosen arm")
    ax.set_ylabel("decisions (sampled)")
    ax.legend(fontsize=8)
    return fig


def faults(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Failures, time-outs and lease expiries per time bucket."""
    fig, (ax,) = _fig(f"Failures, time-outs, lease expiries: {data.name}")
    s = data.faults
    if len(s.x) == 0:
        _empty(ax)
        return fig
    t = _times(s.x)
    for key in ("failures", "time-outs", "lease expiries"):
        if key in s.values:
            ax.plot(t, s.values[key], marker=".", label=f"{key} ({int(s.values[key].sum())})")
    _time_axis(ax, t)
    ax.set_ylabel("count per bucket")
    ax.legend(fontsize=8)
    return fig


def workers(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Throughput (trials/s) and mean trial latency (ms) per worker over time."""
    fig, axes = _fig(f"Workers: {data.name}", 2)
    if not data.workers:
        _empty(axes[0])
        return fig
    t: list[datetime] = []
    for name, s in sorted(data.workers.items()):
        ts = _times(s.x)
        t += ts
        axes[0].plot(ts, s.values["per_s"], label=name[:40])
        axes[1].plot(ts, s.values["latency_ms"], label=name[:40])
    axes[0].set_ylabel("trials per second")
    axes[1].set_ylabel("mean trial latency (ms)")
    for ax in axes:
        _time_axis(ax, t)
    axes[0].legend(fontsize=7)
    return fig


def inference(data: ReportData, cf: Counterfactual | None = None) -> Figure:
    """Latency per arm against the batch shape, quality against the floor, violations."""
    fig, axes = _fig(f"Inference: {data.name}", 3)
    r = data.rounds
    if len(r["seq"]) == 0:
        _empty(axes[0])
        return fig
    feat = data.features[0] if data.features else None
    x = r["context"][:, 0] if feat else r["seq"].astype(float)
    for a in range(len(data.arms)):
        m = r["arm"] == a
        if m.any():
            axes[0].scatter(x[m], r["latency_ms"][m], s=8, label=data.arm_labels[a][:30])
    axes[0].set_xlabel(f"context: {feat}" if feat else "instance")
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(fontsize=6)
    q = r["quality"]
    floor = data.quality_floor()
    mq = np.isfinite(q)
    axes[1].scatter(r["seq"][mq], q[mq], s=8)
    if floor is not None:
        axes[1].axhline(floor, color="red", ls="--", label=f"floor {floor:g}")
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("instance (sequence number)")
    axes[1].set_ylabel("quality (cosine vs fp32)")
    viol = [
        int(((r["arm"] == a) & mq & (q < (floor or -np.inf))).sum()) for a in range(len(data.arms))
    ]
    axes[2].bar(range(len(viol)), viol)
    axes[2].set_xticks(
        range(len(viol)), [lbl[:14] for lbl in data.arm_labels], rotation=90, fontsize=6
    )
    axes[2].set_xlabel("arm")
    axes[2].set_ylabel("monitored trials below the floor")
    fig.subplots_adjust(bottom=0.35)
    return fig


PLOTS: dict[str, Callable[[ReportData, Counterfactual | None], Figure]] = {
    "cost": cost,
    "arms": arms,
    "cost-by-arm": cost_by_arm,
    "reasons": reasons,
    "propensity": propensity,
    "faults": faults,
    "workers": workers,
    "inference": inference,
}


def plot_names(data: ReportData) -> list[str]:
    """The plots that apply to this campaign (``inference`` only for inference campaigns)."""
    return [k for k in PLOTS if k != "inference" or data.overview["kind"] == "inference"]


def png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
