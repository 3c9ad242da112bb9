"""The kernel layer against plain reference implementations that share no code with it:
SOR iteration counts identical on random instances of several families and sizes, SSOR-PCG
within one iteration, multicolour SOR within 10% of natural at the best omega, generators
against dense eigenvalues, and bad input as a clear error or a non-converged result."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.linsys import LinearSystem, build_system
from tasks.solvers.csr import prepare
from tasks.solvers.generators import build_matrix, lambda_min, validate
from workers.solvers.cache import MatrixCache
from workers.solvers.multicolor import colors, multicolor_sor
from workers.solvers.pcg import ssor_pcg
from workers.solvers.sor import sor, sweep


# ------------------------------------------------------------------ plain references
def ref_sor(A: Any, b: np.ndarray, omega: float, tol: float, cap: int, x0: Any = None) -> int:
    A = sp.csr_matrix(A)
    M = (sp.tril(A, k=-1) + sp.diags(A.diagonal() / omega)).tocsr()
    x = np.zeros(A.shape[0]) if x0 is None else np.array(x0, float)
    r0 = np.linalg.norm(b - A @ x)
    for k in range(1, cap + 1):
        x = x + spla.spsolve_triangular(M, b - A @ x, lower=True)
        rel = np.linalg.norm(b - A @ x) / r0
        if rel < tol or not np.isfinite(rel) or rel > 1e12:
            return k
    return cap


def ref_pcg(A: Any, b: np.ndarray, omega: float, tol: float, cap: int, x0: Any = None) -> int:
    A = sp.csr_matrix(A)
    d = A.diagonal() / omega
    lower = (sp.tril(A, k=-1) + sp.diags(d)).tocsr()
    upper = (sp.triu(A, k=1) + sp.diags(d)).tocsr()

    def prec(r: np.ndarray) -> np.ndarray:
        y = spla.spsolve_triangular(lower, r, lower=True)
        return spla.spsolve_triangular(upper, d * y, lower=False)

    x = np.zeros(A.shape[0]) if x0 is None else np.array(x0, float)
    r = b - A @ x
    r0 = np.linalg.norm(b)  # MATLAB pcg: relative to the right-hand side
    z = prec(r)
    p = z.copy()
    rz = r @ z
    for k in range(1, cap + 1):
        q = A @ p
        alpha = rz / (p @ q)
        x += alpha * p
        r -= alpha * q
        if np.linalg.norm(r) / r0 < tol:
            return k
        z = prec(r)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return cap


def _random_csr(n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """A random sparse symmetric, strictly diagonally dominant matrix."""
    B = sp.random(n, n, density=min(1.0, 4.0 / n), random_state=rng, format="csr")
    B = B + B.T
    return (B + sp.diags(np.asarray(abs(B).sum(axis=1)).ravel() + rng.uniform(0.1, 1.0, n))).tocsr()


def _instances(count: int, seed: int) -> list[tuple[str, Any, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    families = [
        lambda: {"generator": "laplace2d", "m": int(rng.integers(4, 14))},
        lambda: {"generator": "laplace3d", "m": int(rng.integers(3, 7))},
        lambda: {"generator": "anisotropic2d", "m": int(rng.integers(4, 12)), "eps": 0.05},
        lambda: {
            "generator": "variable_diffusion2d",
            "m": int(rng.integers(4, 12)),
            "contrast": 100.0,
            "coeff_seed": int(rng.integers(100)),
        },
        lambda: {"generator": "heat2d", "m": int(rng.integers(4, 14)), "dt": 1e-3, "kappa": 5.0},
    ]
    for i in range(count):
        if i % 6 == 5:
            n = int(rng.integers(20, 150))
            A = _random_csr(n, rng)
            out.append(("random", A, rng.standard_normal(n)))
            continue
        spec = families[i % 5]()
        spec = validate({**spec, "rel_shift": float(rng.uniform(-0.5, 2.0)), "seed": i})
        A, b = build_system(spec)
        out.append((spec["generator"], A, b))
    return out


# ------------------------------------------------------------------ parity
def test_sor_iteration_counts_equal_the_reference_on_60_random_instances() -> None:
    rng = np.random.default_rng(7)
    families = set()
    for label, A, b in _instances(60, seed=11):
        omega = float(rng.uniform(0.6, 1.95))
        x0 = rng.standard_normal(A.shape[0]) if rng.random() < 0.3 else None
        got = sor(prepare(A), b, omega, 1e-8, 3000, x0)
        want = ref_sor(A, b, omega, 1e-8, 3000, x0)
        assert got.iterations == want, (label, A.shape, omega)
        assert got.converged == (want < 3000 and got.residual < 1e-8)
        families.add(label)
    assert len(families) == 6


def test_ssor_pcg_counts_within_one_iteration_of_the_reference() -> None:
    rng = np.random.default_rng(3)
    for label, A, b in _instances(30, seed=5):
        omega = float(rng.uniform(0.3, 1.9))
        x0 = rng.standard_normal(A.shape[0]) if rng.random() < 0.3 else None
        got = ssor_pcg(prepare(A), b, omega, 1e-8, 2000, x0)
        want = ref_pcg(A, b, omega, 1e-8, 2000, x0)
        assert got.converged and abs(got.iterations - want) <= 1, (label, omega, got, want)
        assert got.metrics["true_residual"] < 1e-7


@pytest.mark.parametrize("kind", ["forward", "backward", "symmetric"])
def test_one_sweep_equals_the_triangular_solve(kind: str) -> None:
    A, b = build_system(validate({"generator": "variable_diffusion2d", "m": 7, "seed": 2}))
    omega = 1.37
    x0 = np.random.default_rng(1).standard_normal(A.shape[0])
    x = x0.copy()
    sweep(prepare(A), x, b, omega, kind)
    D = sp.diags(A.diagonal() / omega)
    lower, upper = (sp.tril(A, -1) + D).tocsr(), (sp.triu(A, 1) + D).tocsr()
    want = x0.copy()
    if kind in ("forward", "symmetric"):
        want = want + spla.spsolve_triangular(lower, b - A @ want, lower=True)
    if kind in ("backward", "symmetric"):
        want = want + spla.spsolve_triangular(upper, b - A @ want, lower=False)
    np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ orderings
@pytest.mark.parametrize("m", [16, 32, 48])
def test_multicolor_counts_within_ten_percent_of_natural_at_the_best_omega(m: int) -> None:
    A, b = build_system(validate({"generator": "laplace2d", "m": m, "seed": m}))
    P = prepare(A)
    best = 2.0 / (1.0 + math.sin(math.pi / (m + 1)))  # Young's optimum for this Laplacian
    nat = sor(P, b, best, 1e-8, 20_000)
    mc = multicolor_sor(P, b, best, 1e-8, 20_000)
    assert nat.converged and mc.converged and mc.metrics["colors"] == 2
    assert abs(mc.iterations - nat.iterations) <= 0.10 * nat.iterations, (nat, mc)
    np.testing.assert_allclose(mc.x, spla.spsolve(A.tocsc(), b), rtol=1e-5, atol=1e-6)


def test_colorings_are_red_black_on_grids_and_valid_on_any_csr() -> None:
    for spec in ({"generator": "laplace2d", "m": 9}, {"generator": "laplace3d", "m": 5}):
        assert int(colors(prepare(build_matrix(validate(spec)))).max()) + 1 == 2
    rng = np.random.default_rng(0)
    A = sp.random(80, 80, density=0.08, random_state=rng, format="csr") + sp.identity(80)
    col = colors(prepare(A.tocsr()))
    coo = A.tocoo()
    off = coo.row != coo.col
    assert not np.any(col[coo.row[off]] == col[coo.col[off]])  # no coupling inside a colour


def test_float32_multicolor_option_converges() -> None:
    A, b = build_system(validate({"generator": "laplace2d", "m": 12, "seed": 1}))
    out = multicolor_sor(prepare(A), b, 1.6, 1e-5, 5000, dtype="float32")
    assert out.converged


# ------------------------------------------------------------------ generators
@pytest.mark.parametrize(
    "spec",
    [
        {"generator": "laplace2d", "m": 7},
        {"generator": "laplace3d", "m": 4},
        {"generator": "anisotropic2d", "m": 6, "eps": 0.01},
        {"generator": "heat2d", "m": 6, "dt": 1e-3, "kappa": 10.0},
    ],
)
def test_generators_are_symmetric_with_the_closed_form_smallest_eigenvalue(spec: dict) -> None:  # type: ignore[type-arg]
    s = validate(spec)
    A = build_matrix(s).toarray()
    assert np.allclose(A, A.T)
    assert np.linalg.eigvalsh(A)[0] == pytest.approx(lambda_min(s), rel=1e-10)


def test_variable_diffusion_bound_and_contrast() -> None:
    s = validate({"generator": "variable_diffusion2d", "m": 10, "contrast": 1e4, "blocks": 3})
    A = build_matrix(s).toarray()
    assert np.allclose(A, A.T)
    assert np.linalg.eigvalsh(A)[0] >= lambda_min(s) * (1 - 1e-12)
    off = -A[np.triu_indices(100, 1)]
    off = off[off > 0]
    assert off.max() / off.min() > 100  # the coefficient field spans orders of magnitude


def test_relative_shift_keeps_a_large_grid_positive_definite() -> None:
    # At m = 100 the paper's absolute shift -0.15 is indefinite; -0.9 lambda_min is not.
    with pytest.raises(InputError) as info:
        LinearSystem.laplace2d(100, -0.15)
    assert info.value.field == "system.shift" and "rel_shift" in info.value.message
    s = validate({"generator": "laplace2d", "m": 100, "rel_shift": -0.9})
    low = spla.eigsh(build_matrix(s).tocsc(), k=1, sigma=0, return_eigenvectors=False)[0]
    assert low == pytest.approx(0.1 * lambda_min(s), rel=1e-6)
    with pytest.raises(InputError, match="rel_shift"):
        validate({"generator": "laplace2d", "m": 10, "rel_shift": -1.0})


# ------------------------------------------------------------------ bad input
def _csr_system(A: Any, b: Any) -> dict[str, Any]:
    A = sp.csr_matrix(A)
    return {
        "n": A.shape[0],
        "indptr": A.indptr.tolist(),
        "indices": A.indices.tolist(),
        "data": A.data.tolist(),
        "b": list(b),
    }


@pytest.mark.parametrize(
    ("kind", "system", "field"),
    [
        ("sor", _csr_system([[0.0, 1.0], [1.0, 2.0]], [1, 1]), "system.diagonal"),
        ("ssor-pcg", _csr_system([[-2.0, 1.0], [1.0, 2.0]], [1, 1]), "system.diagonal"),
        (
            "sor",
            _csr_system([[2.0, 1.0], [1.0, 2.0]], [1, 1]) | {"data": [2, float("nan"), 1, 2]},
            "system.data",
        ),
        ("ssor-pcg", _csr_system([[2.0, 1.0], [0.5, 2.0]], [1, 1]), "system.A"),
        ("ssor-pcg", {"generator": "laplace2d", "m": 100, "shift": -0.15}, "system.shift"),
        ("sor", {"generator": "laplace3d", "m": 10, "rel_shift": -2.0}, "system.rel_shift"),
        ("sor", {"generator": "heat2d", "m": 10, "dt": -1.0}, "system.dt"),
        ("sor", {"generator": "poisson9", "m": 10}, "system.generator"),
    ],
)
def test_bad_systems_are_refused_at_submit_time_naming_the_field(
    kind: str, system: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputError) as info:
        get_kind(kind).validate_spec({"system": system})
    assert info.value.field == field, str(info.value)


def test_bad_x0_is_refused() -> None:
    spec = {"system": {"generator": "laplace2d", "m": 3}, "x0": [0.0] * 8}
    with pytest.raises(InputError, match="x0"):
        get_kind("sor").validate_spec(spec)
    with pytest.raises(InputError, match="x0"):
        get_kind("sor").validate_spec({**spec, "x0": [float("nan")] * 9})


def test_indefinite_pcg_is_a_result_not_a_hang() -> None:
    system = _csr_system([[1.0, 3.0], [3.0, 1.0]], [1.0, 2.0])
    out = get_kind("ssor-pcg").run({"system": system, "max_iters": 10_000}, {"omega": 1.0})
    assert out.converged is False and out.iterations is not None and out.iterations < 10
    assert out.cost == 10_000  # a failed solve costs the cap


def test_kinds_report_set_up_separately_and_reuse_the_prepared_matrix() -> None:
    spec = {"system": {"generator": "laplace2d", "m": 30, "seed": 4}, "tol": 1e-8}
    first = get_kind("ssor-pcg").run(spec, {"omega": 1.5})
    again = get_kind("ssor-pcg").run(spec, {"omega": 1.7})
    assert first.converged and again.converged
    assert again.metrics["cache_hit"] is True
    assert again.metrics["setup_ms"] < first.metrics["setup_ms"] or first.metrics["cache_hit"]
    assert first.metrics["kernel_ms"] > 0 and first.metrics["n"] == 900
    assert 0 < first.metrics["contraction"] < 1


def test_warm_start_x0_cuts_iterations() -> None:
    sys_ = {"generator": "heat2d", "m": 20, "dt": 1e-3, "kappa": 5.0, "seed": 1}
    A, b = build_system(validate(sys_))
    x = spla.spsolve(A.tocsc(), b)
    cold = get_kind("ssor-pcg").run({"system": sys_}, {"omega": 1.3})
    warm = get_kind("ssor-pcg").run({"system": sys_, "x0": list(x * 0.999)}, {"omega": 1.3})
    assert warm.converged and warm.iterations is not None and cold.iterations is not None
    assert warm.iterations < cold.iterations


def test_matrix_cache_is_bounded_in_bytes() -> None:
    cache = MatrixCache(max_bytes=200_000)
    for m in (20, 21, 22, 23):
        A = build_matrix(validate({"generator": "laplace2d", "m": m}))
        cache.get(f"k{m}", lambda A=A: (prepare(A), None))
    assert cache.nbytes <= 200_000
    assert cache.misses == 4
    _P, _b, hit = cache.get("k23", lambda: (prepare(sp.identity(2, format="csr")), None))
    assert hit


def test_affine_form_shares_the_structure_and_matches_scipy() -> None:
    A, b = build_system(validate({"generator": "variable_diffusion2d", "m": 9, "seed": 1}))
    P = prepare(A)
    Q = P.affine(2.0, 0.25)
    assert Q.indices is P.indices and Q.indptr is P.indptr  # no copy of the structure
    want = (2.0 * sp.identity(A.shape[0]) + 0.25 * A).tocsr()
    np.testing.assert_allclose(Q.scipy().toarray(), want.toarray(), rtol=1e-15)
    assert sor(Q, b, 1.3, 1e-8, 5000).iterations == ref_sor(want, b, 1.3, 1e-8, 5000)
    with pytest.raises(InputError, match="alpha"):
        P.affine(0.0, 0.0)
