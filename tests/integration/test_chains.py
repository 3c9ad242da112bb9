"""Chained instances on PostgreSQL + RabbitMQ with real scheduler and worker processes: a
time-stepping sequence submitted at once and solved where the solutions are, a chain broken
by a failed step, and the submit-time checks of ``SolutionOf``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from sqlalchemy import text

from app import InputError, LinearSystem, SolutionOf
from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from tasks.solvers.generators import build_matrix, validate


def _laplacian(m: int) -> sp.csr_matrix:
    return build_matrix(validate({"generator": "laplace2d", "m": m})).tocsr()


def test_a_time_stepping_chain_runs_where_the_solutions_are(pg_settings: Settings) -> None:
    """Crank-Nicolson steps (I + s A) u' = (I - s A) u + f, all submitted before any runs,
    four in flight over two workers (so a step often lands on the worker that did not solve
    its predecessor, or before it): every solution is the step of the one before it."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "chain", "ssor-pcg", {"omega": [1.0, 1.4, 1.8]}, context_features=["s"], max_in_flight=4
    )
    m, steps = 12, 24
    A = _laplacian(m)
    n = A.shape[0]
    handle = client.store_matrix(A)
    rng = np.random.default_rng(0)
    forcing = [rng.uniform(0.0, 1.0, n) for _ in range(steps)]
    scales = [0.05 + 0.4 * (k % 5) / 4 for k in range(steps)]
    ids: list[int] = []
    for k in range(steps):
        s = scales[k]
        b = SolutionOf(ids[-1], 1.0, -s, forcing[k]) if ids else forcing[k]
        x0 = SolutionOf(ids[-1]) if ids else None
        system = LinearSystem.affine(handle, b, alpha=1.0, beta=s)
        ids.append(
            camp.submit(system, {"s": s}, tol=1e-10, max_iters=5000, x0=x0, return_solution=True)
        )
    with LocalCluster(pg_settings, workers=2):
        counts = camp.wait(timeout=180)
    assert counts.get("done") == steps, counts
    u = np.zeros(n)
    eye = sp.identity(n, format="csr")
    for k in range(steps):
        s = scales[k]
        u = spla.spsolve((eye + s * A).tocsc(), u - s * (A @ u) + forcing[k])
        got = camp.solution(ids[k], timeout=10).x
        np.testing.assert_allclose(got, u, rtol=1e-6, atol=1e-8)
    # nothing proportional to n in a message or a row: x0 and b travel as a few numbers
    with client.engine.connect() as conn:
        spec_bytes, row_bytes = conn.execute(
            text(
                "SELECT max(length(i.spec::text)), max(pg_column_size(r.*)) FROM instances i "
                "JOIN trials t ON t.instance_id = i.id JOIN results r ON r.trial_id = t.id"
            )
        ).one()
    assert spec_bytes < 2048 and row_bytes < 1024, (spec_bytes, row_bytes)
    client.close()


def test_a_failed_step_fails_its_successors_with_the_reason(pg_settings: Settings) -> None:
    """A step whose matrix vanished from the store fails; the steps chained to it fail at
    once (no wait for BANDITQ_CHAIN_WAIT_SECONDS), each naming the instance it needed."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign("broken", "sor", {"omega": [1.5]}, max_in_flight=3)
    A = _laplacian(6) + sp.identity(36)
    lost = client.store_matrix(A * 2.0)
    kept = client.store_matrix(A)
    first = camp.submit(LinearSystem.affine(kept, np.ones(36)), tol=1e-8, return_solution=True)
    second = camp.submit(
        LinearSystem.affine(lost, SolutionOf(first)), tol=1e-8, return_solution=True
    )
    third = camp.submit(
        LinearSystem.affine(kept, SolutionOf(second, 0.5)),
        tol=1e-8,
        x0=SolutionOf(second),
        return_solution=True,
    )
    client.store.delete([lost.ref["sha256"]])
    with LocalCluster(pg_settings, workers=1):
        camp.wait(timeout=120)
    assert camp.solution(first).converged
    with pytest.raises(RuntimeError, match="is not in the store"):
        camp.solution(second)
    with pytest.raises(RuntimeError, match=f"solution of instance {second} is unavailable"):
        camp.solution(third)
    client.close()


def test_submit_checks_what_a_solution_of_refers_to(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign("checks", "sor", {"omega": [1.5]})
    other = client.create_campaign("elsewhere", "sor", {"omega": [1.5]})
    A = _laplacian(5) + sp.identity(25)
    small = client.store_matrix(A)
    big = client.store_matrix(_laplacian(6) + sp.identity(36))
    quiet = camp.submit(LinearSystem.affine(small, np.ones(25)))
    loud = camp.submit(LinearSystem.affine(small, np.ones(25)), return_solution=True)
    foreign = other.submit(LinearSystem.affine(small, np.ones(25)), return_solution=True)
    before = camp.counts()
    cases = [
        (dict(x0=SolutionOf(quiet)), "x0", "without return_solution=True"),
        (dict(x0=SolutionOf(foreign)), "x0", "is not an instance of 'checks'"),
        (dict(x0=SolutionOf(10**9)), "x0", "is not an instance"),
    ]
    for extra, field, words in cases:
        with pytest.raises(InputError) as err:
            camp.submit(LinearSystem.affine(small, np.ones(25)), **extra)
        assert err.value.field == field and words in err.value.message
    with pytest.raises(InputError) as err:
        camp.submit(LinearSystem.affine(big, SolutionOf(loud)))
    assert err.value.field == "system.b" and "25 unknowns, not 36" in err.value.message
    with pytest.raises(InputError) as err:
        camp.submit(LinearSystem.affine(small, np.ones(25)), x0=SolutionOf(loud, plus=[1.0]))
    assert err.value.field == "x0.plus"
    assert camp.counts() == before  # nothing written by a refused submit
    client.close()
