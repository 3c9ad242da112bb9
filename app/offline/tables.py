"""Full-information cost tables (every arm's cost on every instance) for replay evaluation.

File format (``.npz``): ``contexts`` (T x d float), ``arms`` (K or K x p), ``costs`` (T x K
float, >= 0), optional ``context_names`` (d) and ``arm_names`` (K).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.offline.sorbatch import sor_iterations
from tasks.errors import InputError
from tasks.linsys import laplace2d, paper_rhs

PAPER_OMEGAS = np.linspace(1.0, 1.95, 20)


@dataclass
class CostTable:
    contexts: np.ndarray
    arms: np.ndarray
    costs: np.ndarray
    context_names: list[str] = field(default_factory=list)
    arm_names: list[str] = field(default_factory=list)

    @property
    def T(self) -> int:  # noqa: N802 - the paper's notation
        return int(self.costs.shape[0])

    @property
    def K(self) -> int:  # noqa: N802
        return int(self.costs.shape[1])

    def arm_positions(self) -> np.ndarray:
        return self.arms.reshape(self.K, -1).astype(float)

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            contexts=self.contexts,
            arms=self.arms,
            costs=self.costs,
            context_names=np.array(self.context_names),
            arm_names=np.array(self.arm_names),
        )


def load_table(path: str | Path) -> CostTable:
    """Load and validate; every problem raises ``InputError`` naming the array."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InputError("table", f"no such file: {path}") from exc
    except Exception as exc:
        raise InputError("table", f"{path} is not a readable .npz file: {exc}") from exc
    with data:
        for key in ("contexts", "arms", "costs"):
            if key not in data.files:
                raise InputError(key, f"missing from {path}; it holds {sorted(data.files)}")
        try:
            contexts = np.asarray(data["contexts"])
            arms = np.asarray(data["arms"])
            costs = np.asarray(data["costs"])
            cnames = (
                [str(x) for x in data["context_names"]] if "context_names" in data.files else []
            )
            anames = [str(x) for x in data["arm_names"]] if "arm_names" in data.files else []
        except ValueError as exc:  # object arrays need pickle, which we refuse
            raise InputError("table", f"arrays must be numeric, not objects: {exc}") from exc
    return validate_table(CostTable(contexts, arms, costs, cnames, anames))


def validate_table(t: CostTable) -> CostTable:
    for key, arr in (("contexts", t.contexts), ("arms", t.arms), ("costs", t.costs)):
        if arr.dtype.kind not in "iuf":
            raise InputError(key, f"must be a real numeric array, got dtype {arr.dtype}")
    contexts = t.contexts.astype(float)
    if contexts.ndim == 1:
        contexts = contexts[:, None]
    if contexts.ndim != 2:
        raise InputError("contexts", f"must be T x d, got shape {t.contexts.shape}")
    costs = t.costs.astype(float)
    if costs.ndim != 2 or costs.shape[0] == 0 or costs.shape[1] == 0:
        raise InputError("costs", f"must be a non-empty T x K array, got shape {t.costs.shape}")
    T, K = costs.shape
    if contexts.shape[0] != T:
        raise InputError("contexts", f"has {contexts.shape[0]} rows but costs has T={T}")
    if t.arms.ndim not in (1, 2) or t.arms.shape[0] != K:
        raise InputError("arms", f"must have K={K} rows (K or K x p), got shape {t.arms.shape}")
    if not np.all(np.isfinite(contexts)):
        raise InputError("contexts", "must be finite (NaN or inf found)")
    if not np.all(np.isfinite(t.arms.astype(float))):
        raise InputError("arms", "must be finite (NaN or inf found)")
    if not np.all(np.isfinite(costs)):
        raise InputError("costs", "must be finite (NaN or inf found)")
    if np.any(costs < 0):
        raise InputError("costs", "must be non-negative")
    if t.context_names and len(t.context_names) != contexts.shape[1]:
        raise InputError("context_names", f"must have d={contexts.shape[1]} names")
    if t.arm_names and len(t.arm_names) != K:
        raise InputError("arm_names", f"must have K={K} names")
    return CostTable(contexts, t.arms.astype(float), costs, t.context_names, t.arm_names)


def relax_table(
    variance: str,
    T: int = 3000,
    seed: int = 0,
    m: int = 10,
    omegas: np.ndarray = PAPER_OMEGAS,
    tol: float = 1e-8,
    max_iters: int = 100_000,
) -> CostTable:
    """The setup of Khodak et al. (ICLR 2024): A = 5-point Laplacian on an m x m grid, instance
    t is A + c_t I, c_t = -0.15 + 0.6 Beta(2, 6) ("low") or Beta(0.5, 1.5) ("high"), a fresh
    rhs per instance, SOR until relative residual < tol; cost = iterations."""
    a, b = {"low": (2.0, 6.0), "high": (0.5, 1.5)}[variance]
    rng = np.random.default_rng(seed)
    shifts = -0.15 + 0.6 * rng.beta(a, b, size=T)
    n = m * m
    rhs = np.stack([paper_rhs(n, rng) for _ in range(T)], axis=1)
    K = len(omegas)
    costs = (
        sor_iterations(
            laplace2d(m),
            np.repeat(shifts, K),
            np.tile(omegas, T),
            np.repeat(rhs, K, axis=1),
            tol=tol,
            max_iters=max_iters,
        )
        .reshape(T, K)
        .astype(float)
    )
    return CostTable(
        shifts[:, None],
        np.asarray(omegas, float),
        costs,
        ["shift"],
        [f"omega={w:.2f}" for w in omegas],
    )
