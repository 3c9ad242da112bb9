"""The SOR trial kind (compiled kernels) against the batched reference and scipy's direct
solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from app.offline.sorbatch import sor_iterations
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.linsys import LinearSystem, laplace2d, paper_rhs
from tasks.solvers.csr import prepare
from workers.solvers.sor import sor


def test_solution_solves_the_system() -> None:
    A = laplace2d(6, 0.3)
    b = paper_rhs(36, np.random.default_rng(1))
    res = sor(prepare(A), b, 1.6, 1e-10, 5000)
    assert res.converged and res.residual < 1e-10
    np.testing.assert_allclose(res.x, spla.spsolve(A.tocsc(), b), rtol=1e-7, atol=1e-9)


def test_iterations_match_the_batched_reference() -> None:
    A = laplace2d(8)
    rng = np.random.default_rng(2)
    shifts = np.array([-0.1, 0.0, 0.25, 0.4])
    omegas = np.array([1.0, 1.3, 1.7, 1.95])
    rhs = np.stack([paper_rhs(64, rng) for _ in shifts], axis=1)
    batched = sor_iterations(A, shifts, omegas, rhs)
    for j, (c, w) in enumerate(zip(shifts, omegas, strict=True)):
        Aj = laplace2d(8, c)
        assert sor(prepare(Aj), rhs[:, j], w, 1e-8, 10_000).iterations == batched[j]


def test_the_cap_is_a_result_not_a_crash() -> None:
    out = get_kind("sor").run(
        {"system": LinearSystem.laplace2d(10, -0.1, 1).to_spec(), "max_iters": 20}, {"omega": 1.0}
    )
    assert out.converged is False and out.iterations == 20 and out.cost == 20


def test_divergence_is_a_result_not_a_crash() -> None:
    # Not diagonally dominant and indefinite: SOR blows up; reported as converged=False.
    A = sp.csr_matrix(np.array([[1.0, 3.0], [3.0, 1.0]]))
    sys_ = LinearSystem(A, [1.0, 2.0])
    out = get_kind("sor").run({"system": sys_.to_spec(), "max_iters": 10_000}, {"omega": 1.5})
    assert out.converged is False
    assert out.metrics["diverged"] is True
    assert out.iterations is not None and out.iterations < 10_000


@pytest.mark.parametrize(
    ("arm", "field"),
    [
        ({"omega": 0.0}, "arm.omega"),
        ({"omega": 2.0}, "arm.omega"),
        ({"omega": -1}, "arm.omega"),
        ({"omega": "fast"}, "arm.omega"),
        ({"omega": float("nan")}, "arm.omega"),
        ({}, "arm.omega"),
    ],
)
def test_bad_omega_on_the_worker(arm: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as info:
        get_kind("sor").run({"system": LinearSystem.laplace2d(3).to_spec()}, arm)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"tol": 0}, "tol"),
        ({"tol": 1.5}, "tol"),
        ({"tol": "x"}, "tol"),
        ({"max_iters": 0}, "max_iters"),
        ({"max_iters": 2.5}, "max_iters"),
        ({"max_iters": True}, "max_iters"),
    ],
)
def test_bad_solver_settings(spec: dict, field: str) -> None:  # type: ignore[type-arg]
    full = {"system": LinearSystem.laplace2d(3).to_spec(), **spec}
    with pytest.raises(InputError) as info:
        get_kind("sor").validate_spec(full)
    assert info.value.field == field
