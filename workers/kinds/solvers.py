"""Worker side of the solver kinds (``sor``, ``ssor-pcg``): fetch and prepare the system,
run the compiled kernel (or colour-parallel SOR with torch on the worker's device), store the
solution when asked, and turn the solve into an :class:`app.Outcome`.

Loaded only on workers (the kinds name it as their ``runner``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from tasks.chain import is_chained
from tasks.errors import InputError
from tasks.kinds.base import Outcome
from tasks.kinds.linear import check_omega, validate_solver_spec
from tasks.linsys import build_system, spec_key, validate_stored, vector
from tasks.store.blobs import is_ref
from tasks.store.open import fetch
from workers import chain


def run_sor(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    """SOR with the arm's omega; natural ordering on the compiled CPU sweep (sequential by
    nature: a GPU worker runs it on its CPU), ``ordering="multicolor"`` with torch."""
    spec = validate_solver_spec(spec)
    omega = check_omega(arm.get("omega"), "arm.omega")
    opts = options or {}
    P, b, hit, setup = prepared(spec)
    x0 = checked_sizes(P.n, b, initial_guess(spec))
    if opts.get("ordering", "natural") == "multicolor":
        from workers.solvers.multicolor import multicolor_sor

        res = multicolor_sor(
            P, b, omega, spec["tol"], spec["max_iters"], x0, dtype=opts.get("dtype", "float64")
        )
    else:
        from workers.solvers.sor import sor

        res = sor(P, b, omega, spec["tol"], spec["max_iters"], x0)
    out = outcome(res, spec, P, setup, hit)
    out.metrics["ordering"] = opts.get("ordering", "natural")
    return out


def run_ssor_pcg(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    """Conjugate gradients preconditioned by SSOR(omega), natural order."""
    from workers.solvers.pcg import ssor_pcg

    spec = validate_solver_spec(spec, require_spd=True)
    omega = check_omega(arm.get("omega"), "arm.omega")
    P, b, hit, setup = prepared(spec)
    x0 = checked_sizes(P.n, b, initial_guess(spec))
    res = ssor_pcg(P, b, omega, spec["tol"], spec["max_iters"], x0)
    return outcome(res, spec, P, setup, hit)


def checked_sizes(n: int, b: np.ndarray, x0: np.ndarray | None) -> np.ndarray | None:
    """x0 (or None) once b and x0 are checked against the matrix's n, here where the data
    is: the compiled kernels index without bounds checks, so a wrong size must be a failed
    trial naming the field, never a read past an array."""
    if b.ndim != 1 or b.shape[0] != n:
        raise InputError("system.b", f"has {b.size} values for a matrix of n = {n}")
    if x0 is None:
        return None
    x0 = np.ascontiguousarray(x0, dtype=np.float64)
    if x0.ndim != 1 or x0.shape[0] != n:
        raise InputError("x0", f"has {x0.size} values for a matrix of n = {n}")
    if not np.all(np.isfinite(x0)):
        raise InputError("x0", "must be finite (NaN or inf found)")
    return x0


def prepared(spec: dict[str, Any]) -> tuple[Any, np.ndarray, bool, float]:
    """(prepared matrix, b, cache hit, set-up seconds) of a spec's system, from this
    process's byte-bounded cache."""
    from workers.solvers.cache import process_cache

    t0 = time.perf_counter()
    system = spec["system"]
    if "stored" in system:
        # The stored matrix is prepared once per process (keyed by its hash); each trial
        # derives alpha * I + beta * A from it and fetches its own right-hand side.
        st = validate_stored(system)["stored"]
        P0, hit = stored_matrix(st["A"])
        P = _affine_form(P0, st["alpha"], st["beta"])
        b = chain.resolve(st["b"], P0.scipy, "system.b") if is_chained(st["b"]) else vector(st["b"])
        return P, b, hit, time.perf_counter() - t0

    def build() -> tuple[Any, np.ndarray]:
        from tasks.solvers.csr import prepare

        A, b = build_system(system)
        return prepare(A), np.ascontiguousarray(b, dtype=np.float64)

    P, b, hit = process_cache().get(spec_key(system), build)
    return P, b, hit, time.perf_counter() - t0


#: shifted forms alpha * I + beta * A kept per stored matrix (a time-stepping loop with a
#: constant step reuses one, with whatever its trials cached on it, such as a preconditioner)
AFFINE_FORMS = 2


def _affine_form(P0: Any, alpha: float, beta: float) -> Any:
    """``alpha * I + beta * A`` of a prepared stored matrix: built once per (alpha, beta)
    and kept on the matrix (the last :data:`AFFINE_FORMS`), so a repeated system finds its
    preconditioner set up. Single-threaded per process, as trials run."""
    if (alpha, beta) == (0.0, 1.0):
        return P0
    forms: OrderedDict[tuple[float, float], Any] = P0.extra.setdefault("affine", OrderedDict())
    key = (alpha, beta)
    if key in forms:
        forms.move_to_end(key)
        return forms[key]
    forms[key] = P0.affine(alpha, beta)
    while len(forms) > AFFINE_FORMS:
        forms.popitem(last=False)
    return forms[key]


def stored_matrix(ref: dict[str, Any]) -> tuple[Any, bool]:
    """(the prepared matrix a reference names, cache hit), from this process's cache."""
    from tasks.solvers.csr import prepare
    from workers.solvers.cache import process_cache

    def base() -> tuple[Any, None]:
        return prepare(fetch(ref)), None

    P0, _none, hit = process_cache().get("csr:" + ref["sha256"], base)
    return P0, hit


def initial_guess(spec: dict[str, Any]) -> np.ndarray | None:
    """The spec's x0: inline numbers, a stored vector fetched through the host cache, or an
    earlier instance's solution (``SolutionOf``)."""
    x0 = spec.get("x0")
    if x0 is None:
        return None
    if is_chained(x0):
        st = spec["system"].get("stored")

        def matrix() -> Any:
            return stored_matrix(st["A"])[0].scipy()

        return chain.resolve(x0, matrix if st else None, "x0")
    if is_ref(x0):
        return np.asarray(fetch(x0), dtype=np.float64)
    return np.asarray(x0, dtype=np.float64)


def store_solution(x: np.ndarray) -> dict[str, Any]:
    """Write x to the array store; its reference is what the result carries."""
    from tasks.store.blobs import vector_ref
    from tasks.store.open import current

    store, _cache = current()
    ref, data = vector_ref(x)
    store.put(data)
    chain.remember(x, ref)
    return ref


def outcome(res: Any, spec: dict[str, Any], P: Any, setup_s: float, hit: bool) -> Outcome:
    """A non-converged run costs the cap: the policy must learn to avoid it."""
    cost = float(res.iterations if res.converged else spec["max_iters"])
    metrics: dict[str, Any] = {
        "n": P.n,
        "nnz": P.nnz,
        "diverged": res.diverged,
        "setup_ms": setup_s * 1000.0,
        "kernel_ms": res.kernel_seconds * 1000.0,
        "ms_per_iter": res.kernel_seconds * 1000.0 / res.iterations if res.iterations else None,
        "contraction": res.contraction,
        "cache_hit": hit,
        **res.metrics,
    }
    return Outcome(
        cost=cost,
        iterations=res.iterations,
        converged=res.converged,
        residual=res.residual if math.isfinite(res.residual) else None,
        device=res.device,
        metrics=metrics,
        outputs={"x": store_solution(res.x)} if spec["return_solution"] else None,
    )
