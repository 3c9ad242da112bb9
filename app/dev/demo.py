"""``banditq demo``: the main job on whatever the settings name (embedded by default)."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.table import Table

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from app.offline.sorbatch import sor_iterations
from tasks.linsys import LinearSystem, laplace2d, paper_rhs

OMEGAS = [round(1.0 + 0.05 * i, 2) for i in range(20)]


def demo_shifts(n: int, seed: int) -> np.ndarray:
    """The "low variance" shift stream of Khodak et al. (2024): -0.15 + 0.6 Beta(2, 6)."""
    return -0.15 + 0.6 * np.random.default_rng(seed).beta(2.0, 6.0, size=n)


def run_demo(
    settings: Settings, *, instances: int, workers: int, policy: str, seed: int, timeout: float
) -> int:
    con = Console()
    client = Client(settings=settings)
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    camp = client.create_campaign(
        name,
        "sor",
        {"omega": OMEGAS},
        policy=policy,
        context_features=["shift"],
        seed=seed,
        max_in_flight=4,
    )
    shifts = demo_shifts(instances, seed)
    con.print(
        f"[bold]banditq demo[/]: campaign {name}, {instances} systems, {workers} workers, "
        f"policy {policy}; database {settings.redacted()['database_url']}"
    )
    t0 = time.monotonic()
    with LocalCluster(settings, workers=workers) as cluster:
        camp.submit_many(
            [
                (LinearSystem.laplace2d(10, float(c), seed=seed * 100_003 + i), {"shift": float(c)})
                for i, c in enumerate(shifts)
            ],
            tol=1e-8,
            max_iters=10_000,
        )
        try:
            camp.wait(timeout=timeout, progress=True)
        except TimeoutError as exc:
            cluster.check()
            con.print(f"[red]{exc}[/]")
            return 1
    elapsed = time.monotonic() - t0
    rows = camp.results()
    ok = [r for r in rows if r["status"] == "succeeded"]
    # omega = 1 (Gauss-Seidel) on the very same systems, for comparison.
    rhs = np.stack(
        [paper_rhs(100, np.random.default_rng(seed * 100_003 + i)) for i in range(instances)],
        axis=1,
    )
    gs = sor_iterations(laplace2d(10), shifts, np.ones(instances), rhs)
    table = Table("omega", "trials", "mean iterations")
    for w in OMEGAS:
        its = [r["iterations"] for r in ok if abs(r["arm"]["omega"] - w) < 1e-9]
        if its:
            table.add_row(f"{w:.2f}", str(len(its)), f"{np.mean(its):.1f}")
    con.print(table)
    mean_policy = float(np.mean([r["iterations"] for r in ok])) if ok else float("nan")
    half = ok[len(ok) // 2 :]
    mean_late = float(np.mean([r["iterations"] for r in half])) if half else float("nan")
    con.print(f"trials succeeded: {len(ok)}/{instances}   wall time: {elapsed:.1f} s")
    con.print(
        f"mean iterations, policy {policy}: {mean_policy:.1f} "
        f"(second half: {mean_late:.1f});  omega = 1: {gs.mean():.1f};  "
        f"speed-up {gs.mean() / mean_policy:.2f}x"
    )
    client.close()
    return 0 if len(ok) == instances else 1
