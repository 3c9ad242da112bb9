"""Context features of a linear system for solver selection, computed where the data is and
cheaply: at submit for inline systems (O(nnz), plus a 12-step Lanczos on the Jacobi-scaled
matrix: about 15 products with A, a fraction of one solve), from the spec alone for
generator systems (their matrices are built on the worker), from a stored matrix's
reference (its size, entries, symmetry, diagonal range, dominance and conditioning estimate,
recorded at upload by the client that had it in memory: no download; a shifted form
``alpha I + beta A`` gets the first four). A generator system of up to
:data:`BUILD_AT_SUBMIT` unknowns is also built once per spec at submit for the matrix
features below; beyond that, and for stored matrices, a campaign declares the features the
spec gives (or its own).

=================  ========================================================================
``log_n``          log10 of the number of unknowns
``nnz_per_row``    stored entries per row (5 or 7 for the stencil generators)
``symmetric``      1 when A = A^T (to 1e-12 of its largest entry), else 0
``diag_dominance`` the smallest row's |a_ii| / sum_j!=i |a_ij|, capped at 10 (>= 1: diagonally
                   dominant rows; inline and stored systems)
``diag_spread``    log10 of max |a_ii| / min |a_ii| (inline systems)
``log_cond_est``   log10 of the largest over the smallest Ritz value of D^-1/2 A D^-1/2 after
                   12 Lanczos steps: an estimate (a lower bound) of its condition number
                   (inline and stored symmetric systems with a positive diagonal)
``anisotropy``     |log10 eps| of an ``anisotropic2d`` generator, else 0
``contrast``       log10 of a ``variable_diffusion2d`` generator's contrast, else 0
``setup_cached``   1 when the submitting handle sent the same matrix (the same stored matrix
                   and shift, or the same system spec) before, else 0: a worker that solved
                   it keeps its preconditioners (set by the client, ``TrialKind.reuse_key``)
=================  ========================================================================

``zero_diagonal`` (1 when some a_ii = 0) is derived too, for refusing arms, not as a feature.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from tasks.linsys import build_system
from tasks.solvers.generators import DIMS

FEATURES = (
    "log_n",
    "nnz_per_row",
    "symmetric",
    "diag_dominance",
    "diag_spread",
    "log_cond_est",
    "anisotropy",
    "contrast",
)
LANCZOS_STEPS = 12
#: generator systems up to this many unknowns are built at submit for the matrix features
#: (about a second at the limit); larger ones get the features their spec gives
BUILD_AT_SUBMIT = 1_000_000


def system_features(spec: dict[str, Any]) -> dict[str, float]:
    """The features the spec's system allows (see the module docstring)."""
    system = spec.get("system") or {}
    if "generator" in system:
        return _generator(system)
    if "stored" in system:
        A = system["stored"]["A"]
        n = int(A["shape"][0])
        out = {"log_n": math.log10(max(n, 1))}
        if isinstance(A.get("symmetric"), bool):
            out["symmetric"] = 1.0 if A["symmetric"] else 0.0
        if isinstance(A.get("nnz"), int):
            out["nnz_per_row"] = A["nnz"] / max(n, 1)
        lo, hi = A.get("diag_min"), A.get("diag_max")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > 0:
            out["diag_spread"] = math.log10(hi / lo)
        st = system["stored"]
        if st.get("alpha", 0.0) == 0.0 and st.get("beta", 1.0) == 1.0:
            # the matrix itself (not a shifted form): what its upload recorded
            out.update(_recorded(A))
        return out
    A, _b = build_system(system)
    return matrix_features(A)


#: features a matrix's upload records in its reference (:func:`upload_features`)
RECORDED = ("diag_dominance", "log_cond_est")


def upload_features(A: sp.csr_matrix) -> dict[str, float]:
    """What an upload records of a matrix for solver selection (the client has it in memory
    then; afterwards only its reference travels)."""
    return {k: v for k, v in matrix_features(A).items() if k in RECORDED}


def _recorded(ref: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k in RECORDED:
        v = ref.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def _generator(system: dict[str, Any]) -> dict[str, float]:
    gen = system["generator"]
    dims = DIMS.get(gen, 2)
    n = int(system["m"]) ** dims
    eps = float(system.get("eps", 1.0))
    built: dict[str, float] = {}
    if n <= BUILD_AT_SUBMIT:
        built = _built(json.dumps(system, sort_keys=True))
    return {
        **built,
        "log_n": math.log10(n),
        "nnz_per_row": float(2 * dims + 1),
        "symmetric": 1.0,
        "zero_diagonal": 0.0,
        "anisotropy": abs(math.log10(eps)) if gen == "anisotropic2d" and eps > 0 else 0.0,
        "contrast": math.log10(float(system.get("contrast", 1.0)))
        if gen == "variable_diffusion2d"
        else 0.0,
    }


@functools.lru_cache(maxsize=32)
def _built(system_json: str) -> dict[str, float]:
    """A generator's matrix features, built once per spec in this process (a time-stepping
    loop submits the same spec again and again)."""
    A, _b = build_system(json.loads(system_json))
    return matrix_features(A)


def matrix_features(A: sp.csr_matrix) -> dict[str, float]:
    """Every feature of an assembled matrix (O(nnz) and a short Lanczos run)."""
    A = sp.csr_matrix(A)
    n = A.shape[0]
    d = A.diagonal()
    absd = np.abs(d)
    off = np.asarray(abs(A).sum(axis=1)).ravel() - absd
    scale = float(np.abs(A.data).max()) if A.nnz else 1.0
    diff = abs(A - A.T)
    symmetric = not diff.nnz or float(diff.max()) <= 1e-12 * scale
    out = {
        "log_n": math.log10(max(n, 1)),
        "nnz_per_row": A.nnz / max(n, 1),
        "symmetric": 1.0 if symmetric else 0.0,
        "zero_diagonal": 1.0 if bool((absd == 0).any()) else 0.0,
        "diag_dominance": float(min(10.0, np.min(absd / np.maximum(off, 1e-300)))),
        "diag_spread": float(np.log10(absd.max() / absd.min())) if absd.min() > 0 else 0.0,
        "anisotropy": 0.0,
        "contrast": 0.0,
    }
    if symmetric and (d > 0).all() and n > 1:
        out["log_cond_est"] = _log_cond(A, d)
    return out


def _log_cond(A: sp.csr_matrix, d: np.ndarray) -> float:
    """log10 of the Ritz condition number of D^-1/2 A D^-1/2 after a few Lanczos steps."""
    s = 1.0 / np.sqrt(d)
    S = sp.diags(s) @ A @ sp.diags(s)
    n = A.shape[0]
    k = min(LANCZOS_STEPS, n)
    v = np.random.default_rng(0).standard_normal(n)
    v /= np.linalg.norm(v)
    alpha, beta, prev, b = [], [], np.zeros(n), 0.0
    for _ in range(k):
        w = S @ v - b * prev
        a = float(v @ w)
        w -= a * v
        b = float(np.linalg.norm(w))
        alpha.append(a)
        if b < 1e-12:
            break
        beta.append(b)
        prev, v = v, w / b
    T = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
    ritz = np.linalg.eigvalsh(T)
    lo, hi = float(ritz.min()), float(ritz.max())
    return math.log10(hi / lo) if lo > 0 else 16.0
