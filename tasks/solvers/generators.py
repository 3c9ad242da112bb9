"""PDE matrices built on the worker from a small spec (nothing large on the wire).

Grids are m points per axis (interior points of the unit square or cube, h = 1/(m+1)),
row-major. Light (numpy and scipy only): the client validates specs with the same code.

- ``laplace2d``: 5-point Laplacian, diagonal 4 (unscaled); lambda_min = 8 sin^2(pi h / 2).
- ``laplace3d``: 7-point Laplacian, diagonal 6; lambda_min = 12 sin^2(pi h / 2).
- ``anisotropic2d``: coefficient ``eps`` on the x axis, 1 on y; (1 + eps) 4 sin^2(pi h / 2).
- ``variable_diffusion2d``: -div(c grad u), c piecewise constant on a seeded ``blocks`` x
  ``blocks`` field spanning ``contrast`` (max/min), faces take the harmonic mean; lambda_min
  >= c_min 8 sin^2(pi h / 2) (a bound, not the value).
- ``heat2d``: the Crank-Nicolson operator I + 0.5 dt kappa L / h^2 (L the 5-point Laplacian);
  lambda_min = 1 + 0.5 dt kappa 8 sin^2(pi h / 2) / h^2.

``shift`` adds shift * I; ``rel_shift`` adds rel_shift * lambda_min * I (so > -1 keeps the
matrix positive definite at any size; for variable_diffusion2d the bound above is used).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from tasks.errors import InputError, finite_number

MAX_UNKNOWNS = 20_000_000
GENERATORS = ("laplace2d", "laplace3d", "anisotropic2d", "variable_diffusion2d", "heat2d")
DIMS = {"laplace3d": 3}


def _num(spec: dict[str, Any], key: str, field: str, default: float, lo: float, hi: float) -> float:
    raw = spec.get(key, default)
    v = finite_number(raw, f"{field}.{key}")
    if not lo <= v <= hi:
        raise InputError(f"{field}.{key}", f"must be in [{lo}, {hi}], got {raw}")
    return v


def _int(spec: dict[str, Any], key: str, field: str, default: int, lo: int, hi: int) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(f"{field}.{key}", f"must be an integer in {lo}..{hi}, got {v!r}")
    return int(v)


ALLOWED = {
    "laplace2d": set(),
    "laplace3d": set(),
    "anisotropic2d": {"eps"},
    "variable_diffusion2d": {"contrast", "blocks", "coeff_seed"},
    "heat2d": {"dt", "kappa"},
}


def validate(spec: dict[str, Any], field: str = "system") -> dict[str, Any]:
    """The normalized generator spec, or ``InputError`` naming the field."""
    gen = spec.get("generator")
    if gen not in GENERATORS:
        raise InputError(
            f"{field}.generator", f"unknown generator {gen!r}; allowed: {', '.join(GENERATORS)}"
        )
    unknown = sorted(
        set(spec) - {"generator", "m", "shift", "rel_shift", "seed"} - ALLOWED[str(gen)]
    )
    if unknown:
        raise InputError(f"{field}.{unknown[0]}", f"unknown key for generator {gen!r}")
    dims = DIMS.get(str(gen), 2)
    m_max = int(round(MAX_UNKNOWNS ** (1.0 / dims)))
    out: dict[str, Any] = {"generator": gen, "m": _int(spec, "m", field, 0, 1, m_max)}
    out["seed"] = _int(spec, "seed", field, 0, 0, 2**63 - 1)
    if gen == "anisotropic2d":
        out["eps"] = _num(spec, "eps", field, 0.01, 1e-6, 1e6)
    if gen == "variable_diffusion2d":
        out["contrast"] = _num(spec, "contrast", field, 100.0, 1.0, 1e8)
        out["blocks"] = _int(spec, "blocks", field, 4, 1, 1024)
        out["coeff_seed"] = _int(spec, "coeff_seed", field, 0, 0, 2**63 - 1)
    if gen == "heat2d":
        out["dt"] = _num(spec, "dt", field, 1e-3, 1e-12, 1e6)
        out["kappa"] = _num(spec, "kappa", field, 1.0, 0.0, 1e12)
    if "shift" in spec and "rel_shift" in spec:
        raise InputError(f"{field}.rel_shift", "give shift or rel_shift, not both")
    if "rel_shift" in spec:
        rel = _num(spec, "rel_shift", field, 0.0, -1e12, 1e12)
        if rel <= -1.0:
            raise InputError(
                f"{field}.rel_shift",
                f"must be > -1 (rel_shift * lambda_min is added; -1 makes A singular), got {rel}",
            )
        out["rel_shift"] = rel
    else:
        out["shift"] = _num(spec, "shift", field, 0.0, -1e12, 1e12)
        lam = lambda_min(out)
        if lam + out["shift"] <= 0:
            raise InputError(
                f"{field}.shift",
                f"shift {out['shift']} makes A indefinite: its smallest eigenvalue is "
                f"{lam:.4g} (use rel_shift, relative to it, to stay positive definite at any m)",
            )
    return out


def _s2(m: int) -> float:
    return math.sin(math.pi / (2.0 * (m + 1))) ** 2


def lambda_min(spec: dict[str, Any]) -> float:
    """The smallest eigenvalue of the unshifted operator (a lower bound for
    variable_diffusion2d)."""
    gen, m = spec["generator"], spec["m"]
    if gen == "laplace2d":
        return 8.0 * _s2(m)
    if gen == "laplace3d":
        return 12.0 * _s2(m)
    if gen == "anisotropic2d":
        return (1.0 + spec["eps"]) * 4.0 * _s2(m)
    if gen == "variable_diffusion2d":
        return float(_coefficients(spec).min()) * 8.0 * _s2(m)
    h = 1.0 / (m + 1)
    return 1.0 + 0.5 * spec["dt"] * spec["kappa"] * 8.0 * _s2(m) / h**2


def _stencil(shape: tuple[int, ...], diag: np.ndarray, links: list[tuple[int, np.ndarray]]) -> Any:
    """CSR (int32, sorted columns) from a diagonal and, per axis, the coupling to the next
    point on that axis (``(axis, w)``: w[p] couples p and p + e_axis; symmetric). Filled one
    neighbour direction at a time, so the temporaries stay a few vectors of length n."""
    n = int(np.prod(shape))
    strides = [int(np.prod(shape[a + 1 :])) for a in range(len(shape))]
    by_axis = dict(links)
    # Columns in increasing order: far-before, ..., before, self, after, ..., far-after.
    order = sorted(by_axis, key=lambda a: -strides[a])
    dirs = [(a, -1) for a in order] + [(-1, 0)] + [(a, +1) for a in reversed(order)]

    def valid(axis: int, step: int) -> np.ndarray:
        coord = (np.arange(n, dtype=np.int64) // strides[axis]) % shape[axis]
        return coord > 0 if step < 0 else coord < shape[axis] - 1

    counts = np.ones(n, dtype=np.int32)
    for axis in by_axis:
        counts += valid(axis, -1)
        counts += valid(axis, +1)
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=indptr[1:])
    del counts
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float64)
    cursor = indptr[:-1].copy()
    for axis, step in dirs:
        if axis < 0:
            rows = np.arange(n, dtype=np.int32)
            vals = diag
        else:
            rows = np.flatnonzero(valid(axis, step)).astype(np.int32)
            w = by_axis[axis]
            # the coupling of p and p - e is stored at p - e
            vals = w[rows - strides[axis]] if step < 0 else w[rows]
        slots = cursor[rows]
        indices[slots] = rows + step * strides[axis] if axis >= 0 else rows
        data[slots] = -vals if axis >= 0 else vals
        cursor[rows] += 1
        del rows, slots, vals
    A = sp.csr_matrix((data, indices, indptr), shape=(n, n), copy=False)
    A.has_sorted_indices = True
    return A


def _coefficients(spec: dict[str, Any]) -> np.ndarray:
    """The cell coefficient field of variable_diffusion2d (m x m), in [1, contrast]."""
    m, blocks = spec["m"], spec["blocks"]
    rng = np.random.default_rng(spec["coeff_seed"])
    levels = 10.0 ** rng.uniform(0.0, math.log10(spec["contrast"]), size=(blocks, blocks))
    levels[0, 0], levels[-1, -1] = 1.0, spec["contrast"]  # the contrast is attained
    idx = np.minimum((np.arange(m) * blocks) // max(m, 1), blocks - 1)
    return levels[np.ix_(idx, idx)]


def build_matrix(spec: dict[str, Any]) -> Any:
    """The CSR matrix (int32 indices, sorted) of a validated generator spec."""
    gen, m = spec["generator"], spec["m"]
    shift = spec.get("shift")
    if shift is None:
        shift = spec.get("rel_shift", 0.0) * lambda_min(spec)
    if gen == "laplace3d":
        ones = np.ones(m**3)
        return _stencil((m, m, m), 6.0 + shift + 0.0 * ones, [(0, ones), (1, ones), (2, ones)])
    if gen == "variable_diffusion2d":
        c = _coefficients(spec)
        # face weights: harmonic means between neighbours; boundary faces take the cell's own
        wx = np.zeros((m, m))  # between (i, j) and (i, j + 1): axis 1
        wy = np.zeros((m, m))  # between (i, j) and (i + 1, j): axis 0
        wx[:, :-1] = 2.0 * c[:, :-1] * c[:, 1:] / (c[:, :-1] + c[:, 1:])
        wy[:-1, :] = 2.0 * c[:-1, :] * c[1:, :] / (c[:-1, :] + c[1:, :])
        left = np.concatenate([c[:, :1], wx[:, :-1]], axis=1)
        right = np.concatenate([wx[:, :-1], c[:, -1:]], axis=1)
        up = np.concatenate([c[:1, :], wy[:-1, :]], axis=0)
        down = np.concatenate([wy[:-1, :], c[-1:, :]], axis=0)
        diag = (left + right + up + down).ravel() + shift
        return _stencil((m, m), diag, [(0, wy.ravel()), (1, wx.ravel())])
    ones = np.ones(m * m)
    cy, cx = 1.0, float(spec.get("eps", 1.0)) if gen == "anisotropic2d" else 1.0
    d0 = 0.0
    if gen == "heat2d":
        h = 1.0 / (m + 1)
        scale = 0.5 * spec["dt"] * spec["kappa"] / h**2
        cy, cx, d0 = scale, scale, 1.0
    diag = (d0 + 2.0 * cy + 2.0 * cx + shift) * ones
    return _stencil((m, m), diag, [(0, cy * ones), (1, cx * ones)])


def paper_rhs(n: int, rng: np.random.Generator) -> np.ndarray:
    """Standard normal, redrawn until its norm is at most sqrt(n) (Khodak et al. 2024)."""
    while True:
        b = rng.standard_normal(n)
        if np.linalg.norm(b) <= math.sqrt(n):
            return b


def build(spec: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """(A, b) of a validated generator spec; b from ``seed``."""
    A = build_matrix(spec)
    return A, paper_rhs(A.shape[0], np.random.default_rng(spec["seed"]))
