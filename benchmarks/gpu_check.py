"""Every CUDA path run once on a real accelerator, its figures in one JSON file and one
Markdown table (issue 30). Runs on CPU tensors too (``--device cpu --quick``), which is how
the test suite keeps it working on machines without a GPU.

Sections, each on a time budget (a section past its budget stops and says so; one that fails
records its error and the others still run):

a. the device and its measured copy bandwidth (a large device-to-device copy); multicolour SOR
   at 10^6 and 10^7 unknowns, float64 and float32: ms per iteration, effective GB/s under the
   byte model below and its fraction of the copy bandwidth, against the CPU natural-order
   compiled sweep of the same run;
b. an ``sor`` campaign (multicolour ordering) and an ``ssor-pcg`` campaign end to end on the
   embedded default, one worker on the device (device chosen at run time): iteration counts
   against the same solves on the CPU (multicolour on CPU tensors for ``sor``, the compiled
   natural-order kernel for ``ssor-pcg``);
c. the inference arms the device supports over batches of 1-64 texts and 8-256 tokens: warm
   latency, quality against fp32, and the fastest arm meeting the floor per cell;
d. a 200-batch acceleration campaign replayed on a table measured here: the default policy
   (cold) against the best fixed arm in hindsight and the per-batch oracle.

Byte model of one multicolour iteration (v = 8 B for float64, 4 B for float32; int32
indices): the colour sweeps read A once (nnz (v + 4) + 4 n) with b, the scaled inverse
diagonal and x read and x written (4 v n); the residual that decides convergence reads A, x
and b again (nnz (v + 4) + 4 n + 2 v n): 2 nnz (v + 4) + n (8 + 6 v) bytes.

Writes gpu_check.json and gpu_check.md under ``--out`` (default ``$OUT``, else bench-out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OMEGA = 1.9


class Budget:
    """Seconds left to one section."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def left(self) -> float:
        return self.until - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_gbps(device: Any, nbytes: int) -> float:
    """Read + write bandwidth of a device-to-device copy (best of 5)."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best / 1e9


def byte_model(n: int, nnz: int, dtype: str) -> int:
    v = 8 if dtype == "float64" else 4
    return 2 * nnz * (v + 4) + n * (8 + 6 * v)


def kernels(device: Any, grids: list[int], iters: int, copy: float, budget: Budget) -> list[Any]:
    """Section a: multicolour SOR per size and dtype against the CPU natural-order sweep."""
    import torch

    from tasks.solvers.csr import prepare
    from tasks.solvers.generators import build, validate
    from workers.solvers.multicolor import multicolor_sor
    from workers.solvers.sor import sor

    rows = []
    for m in grids:
        if budget.over():
            rows.append({"m": m, "skipped": "time budget"})
            continue
        A, b = build(validate({"generator": "laplace2d", "m": m, "seed": 1}))
        P = prepare(A)
        n, nnz = P.n, P.nnz
        sor(P, b, OMEGA, 1e-300, 2)  # compiled kernels loaded and warm
        cpu = sor(P, b, OMEGA, 1e-300, max(2, iters // 4))
        cpu_ms = cpu.kernel_seconds * 1000.0 / max(cpu.iterations, 1)
        for dtype in ("float64", "float32"):
            if budget.over():
                rows.append({"m": m, "n": n, "dtype": dtype, "skipped": "time budget"})
                continue
            multicolor_sor(P, b, OMEGA, 1e-300, 2, device=device, dtype=dtype)  # colour blocks
            res = multicolor_sor(P, b, OMEGA, 1e-300, iters, device=device, dtype=dtype)
            ms = res.kernel_seconds * 1000.0 / max(res.iterations, 1)
            gbps = byte_model(n, nnz, dtype) / (ms / 1000.0) / 1e9
            rows.append(
                {
                    "m": m,
                    "n": n,
                    "nnz": nnz,
                    "dtype": dtype,
                    "ms_per_iter": ms,
                    "gbps": gbps,
                    "fraction_of_copy": gbps / copy,
                    "cpu_natural_ms_per_iter": cpu_ms,
                    "speedup_over_cpu_natural": cpu_ms / ms,
                }
            )
        del P, A, b
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def campaigns(device: Any, m: int, count: int, home: Path, budget: Budget) -> dict[str, Any]:
    """Section b: sor (multicolour) and ssor-pcg campaigns through a real worker."""
    import shutil

    import torch

    from app.client import Client
    from app.config import Settings
    from app.dev.local import LocalCluster
    from tasks.linsys import LinearSystem
    from tasks.solvers.csr import prepare
    from workers.solvers.multicolor import multicolor_sor
    from workers.solvers.pcg import ssor_pcg

    shutil.rmtree(home, ignore_errors=True)  # a fresh embedded default per run
    settings = Settings(home=home, sweep_seconds=0.5)
    client = Client(settings=settings)
    shifts = [float(s) for s in np.linspace(0.0, 0.3, count)]
    systems = [LinearSystem.generate("laplace2d", m, seed=i, shift=s) for i, s in enumerate(shifts)]
    omegas = {"omega": [1.5, 1.8, 1.95]}
    mc = client.create_campaign(
        "gpu-sor", "sor", omegas, context_features=["shift"], settings={"ordering": "multicolor"}
    )
    pcg = client.create_campaign("gpu-pcg", "ssor-pcg", omegas, context_features=["shift"])
    env = {} if device.type == "cuda" else {"CUDA_VISIBLE_DEVICES": ""}
    with LocalCluster(settings, workers=1, extra_env=env) as cluster:
        for camp in (mc, pcg):
            camp.submit_many(
                [(s, {"shift": c}) for s, c in zip(systems, shifts, strict=True)],
                tol=1e-8,
                max_iters=20_000,
            )
        mc.wait(timeout=max(30.0, budget.left()))
        pcg.wait(timeout=max(30.0, budget.left()))
        cluster.check()
    cpu = torch.device("cpu")
    out: dict[str, Any] = {}
    for name, camp in (("sor-multicolor", mc), ("ssor-pcg", pcg)):
        rows = []
        for r in camp.results():
            i = shifts.index(r["context"]["shift"])
            A, b = systems[i].build()
            P = prepare(A)
            omega = float(r["arm"]["omega"])
            ref = (
                multicolor_sor(P, b, omega, 1e-8, 20_000, device=cpu)
                if name == "sor-multicolor"
                else ssor_pcg(P, b, omega, 1e-8, 20_000)
            )
            rows.append(
                {
                    "status": r["status"],
                    "device": r.get("device"),
                    "iterations": r["iterations"],
                    "cpu_iterations": ref.iterations,
                }
            )
        diffs = [
            abs(x["iterations"] - x["cpu_iterations"]) / max(x["cpu_iterations"], 1)
            for x in rows
            if x["iterations"] is not None
        ]
        out[name] = {
            "trials": len(rows),
            "succeeded": sum(x["status"] == "succeeded" for x in rows),
            "devices": sorted({str(x["device"]) for x in rows}),
            "max_relative_iteration_difference": max(diffs) if diffs else None,
            # multicolour on the device against multicolour on CPU tensors: the same
            # arithmetic up to the order of floating-point sums
            "within_tolerance": bool(diffs) and max(diffs) <= 0.02,
        }
    client.close()
    return out


def inference_grid(
    device: Any, sizes: list[int], lengths: list[int], floor: float, budget: Budget
) -> dict[str, Any]:
    """Section c: every arm the device supports on a grid of batch shapes."""
    from accel_table import workload_cell

    from tasks.kinds.accel import STANDARD_ARMS
    from tasks.kinds.inference import InferenceKind

    kind = InferenceKind()
    arms = [a for a in STANDARD_ARMS if a.unsupported_reason(device.type) is None]
    cells = []
    for size in sizes:
        for length in lengths:
            texts = workload_cell(size, length, seed=size * 1000 + length)
            row: dict[str, Any] = {"batch": size, "tokens": length, "arms": {}}
            for arm in arms:
                if budget.over():
                    row["arms"][arm.name] = {"skipped": "time budget"}
                    continue
                try:
                    out = kind.run(
                        {"texts": texts, "max_length": 256},
                        arm.to_json(),
                        {"monitor": True, "repeats": 3},
                    )
                except Exception as exc:  # an arm broken on this device: recorded, not fatal
                    row["arms"][arm.name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                    continue
                row["arms"][arm.name] = {
                    "latency_ms": out.cost,
                    "quality": out.quality,
                    "first_call_ms": out.metrics.get("first_call_ms"),
                }
            ok = {
                k: v["latency_ms"]
                for k, v in row["arms"].items()
                if "latency_ms" in v and (v["quality"] or 0.0) >= floor
            }
            row["winner"] = min(ok, key=ok.__getitem__) if ok else None
            cells.append(row)
    return {"arms": [a.name for a in arms], "floor": floor, "cells": cells}


def acceleration(
    device: Any, batches: int, floor: float, out: Path, budget: Budget
) -> dict[str, Any]:
    """Section d: a measured table (arms without torch.compile: their first calls per shape
    would eat the budget), replayed by the default policy, best fixed and the oracle."""
    import accel_table
    from acceleration import fixed, make, online, oracle

    from tasks.kinds.accel import STANDARD_ARMS

    keep = tuple(a for a in STANDARD_ARMS if a.compile == "none")
    tab = accel_table.measure(
        accel_table.workload(batches, seed=7),
        threads=os.cpu_count() or 1,
        repeats=1,
        label="gpu",
        arms=keep,
        deadline=time.monotonic() + budget.left(),
    )
    tab.save(out / "gpu_accel_table.json")
    best = oracle(tab, floor)
    feasible = (tab.quality >= floor).mean(axis=0) >= 0.99
    means = np.where(feasible, tab.latency.mean(axis=0), np.inf)
    best_arm = int(np.argmin(means))
    policy = online(tab, make(tab, floor, seed=0), floor, 0.1, "default")
    best_fixed = fixed(tab, best_arm, floor, 0.1, "best fixed")
    return {
        "batches": tab.T,
        "arms": tab.names,
        "oracle_mean_ms": float(best.mean()),
        "policy_ratio_to_oracle": float(policy.latency.mean() / best.mean()),
        "best_fixed_arm": tab.names[best_arm],
        "best_fixed_ratio_to_oracle": float(best_fixed.latency.mean() / best.mean()),
        "policy_violations": int(policy.violations.sum()),
        "targets": {
            "within_1.15x_oracle": float(policy.latency.mean() / best.mean()) <= 1.15,
            "below_best_fixed": float(policy.latency.mean()) < float(best_fixed.latency.mean()),
            "zero_violations": int(policy.violations.sum()) == 0,
        },
    }


def section(name: str, fn: Callable[[], Any], report: dict[str, Any]) -> None:
    t = time.perf_counter()
    print(f"== {name} ...", flush=True)
    try:
        report[name] = fn()
    except Exception as exc:
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(report[name]["trace"], file=sys.stderr, flush=True)
    report.setdefault("seconds", {})[name] = round(time.perf_counter() - t, 1)


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# GPU check: {r['device']['name']}", ""]
    lines.append(
        f"Copy bandwidth (device to device, read + write): {r['device']['copy_gbps']:.0f} GB/s"
    )
    lines += ["", "| n | dtype | ms/iter | GB/s | of copy | CPU natural ms/iter | speed-up |"]
    lines.append("|---|---|---|---|---|---|---|")
    for k in r.get("kernels") or []:
        if isinstance(k, dict) and "ms_per_iter" in k:
            lines.append(
                f"| {k['n']:,} | {k['dtype']} | {k['ms_per_iter']:.3f} | {k['gbps']:.0f} | "
                f"{k['fraction_of_copy']:.0%} | {k['cpu_natural_ms_per_iter']:.1f} | "
                f"{k['speedup_over_cpu_natural']:.1f}x |"
            )
    camp = r.get("campaigns") or {}
    if "error" not in camp:
        lines += ["", "| campaign | trials | succeeded | devices | max iteration diff vs CPU |"]
        lines.append("|---|---|---|---|---|")
        for name, c in camp.items():
            diff = c["max_relative_iteration_difference"]
            lines.append(
                f"| {name} | {c['trials']} | {c['succeeded']} | {', '.join(c['devices'])} | "
                f"{'-' if diff is None else f'{diff:.1%}'} |"
            )
    grid = r.get("inference") or {}
    if "cells" in grid:
        arms = grid["arms"]
        lines += ["", "| batch x tokens | " + " | ".join(arms) + " | fastest at the floor |"]
        lines.append("|---" * (len(arms) + 2) + "|")
        for c in grid["cells"]:
            cells = []
            for a in arms:
                v = c["arms"].get(a, {})
                cells.append(
                    f"{v['latency_ms']:.2f} ({v['quality']:.3f})" if "latency_ms" in v else "-"
                )
            lines.append(
                f"| {c['batch']} x {c['tokens']} | " + " | ".join(cells) + f" | {c['winner']} |"
            )
    acc = r.get("acceleration") or {}
    if "policy_ratio_to_oracle" in acc:
        lines += [
            "",
            f"Acceleration campaign, {acc['batches']} batches: default policy "
            f"{acc['policy_ratio_to_oracle']:.3f} x oracle, best fixed ({acc['best_fixed_arm']}) "
            f"{acc['best_fixed_ratio_to_oracle']:.3f} x, violations {acc['policy_violations']}.",
        ]
    for name in ("kernels", "campaigns", "inference", "acceleration"):
        v = r.get(name)
        if isinstance(v, dict) and "error" in v:
            lines += ["", f"**{name} failed**: `{v['error']}`"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when present)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a check that it runs")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench-out"))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all sections")
    ap.add_argument("--floor", type=float, default=0.99)
    args = ap.parse_args()
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}", flush=True)
    copy = copy_gbps(device, (64 << 20) if args.quick else (2 << 30))
    print(f"copy bandwidth: {copy:.1f} GB/s", flush=True)
    report: dict[str, Any] = {"device": {"type": device.type, "name": name, "copy_gbps": copy}}
    share = {"kernels": 0.25, "campaigns": 0.2, "inference": 0.3, "acceleration": 0.25}
    q = args.quick
    grids = [40, 100] if q else [1000, 3162]
    section(
        "kernels",
        lambda: kernels(
            device, grids, 5 if q else 40, copy, Budget(args.budget * share["kernels"])
        ),
        report,
    )
    section(
        "campaigns",
        lambda: campaigns(
            device,
            16 if q else 128,
            3 if q else 12,
            args.out / "home",
            Budget(args.budget * share["campaigns"]),
        ),
        report,
    )
    section(
        "inference",
        lambda: inference_grid(
            device,
            [1, 8] if q else [1, 8, 64],
            [8] if q else [8, 64, 256],
            args.floor,
            Budget(args.budget * share["inference"]),
        ),
        report,
    )
    section(
        "acceleration",
        lambda: acceleration(
            device,
            6 if q else 200,
            args.floor,
            args.out,
            Budget(args.budget * share["acceleration"]),
        ),
        report,
    )
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    failed = [k for k in share if isinstance(report.get(k), dict) and "error" in report[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
