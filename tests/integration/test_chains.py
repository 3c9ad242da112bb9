"""Chained instances on PostgreSQL + RabbitMQ with real scheduler and worker processes: a
time-stepping sequence submitted at once and solved where the solutions are, a chain broken
by a failed step, and the submit-time checks of ``SolutionOf``."""

from __future__ import annotations

from typing import Any

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


def _problem(m: int, steps: int, seed: int) -> tuple[sp.csr_matrix, list[np.ndarray], list[float]]:
    """A Laplacian, random forcings and time-step scales of a Crank-Nicolson sequence."""
    A = _laplacian(m)
    rng = np.random.default_rng(seed)
    forcing = [rng.uniform(0.0, 1.0, A.shape[0]) for _ in range(steps)]
    return A, forcing, [0.05 + 0.4 * (k % 5) / 4 for k in range(steps)]


def _assert_steps(
    camp: Any, ids: list[int], A: sp.csr_matrix, forcing: list[np.ndarray], scales: list[float]
) -> None:
    """Every solution is (I + s A)^-1 ((I - s A) u + f) of the one before it."""
    n = A.shape[0]
    u = np.zeros(n)
    eye = sp.identity(n, format="csr")
    for k, s in enumerate(scales):
        u = spla.spsolve((eye + s * A).tocsc(), u - s * (A @ u) + forcing[k])
        np.testing.assert_allclose(camp.solution(ids[k], timeout=10).x, u, rtol=1e-6, atol=1e-8)


def test_a_time_stepping_chain_runs_where_the_solutions_are(pg_settings: Settings) -> None:
    """Crank-Nicolson steps (I + s A) u' = (I - s A) u + f, all submitted before any runs,
    four in flight over two workers (so a step often lands on the worker that did not solve
    its predecessor, or before it): every solution is the step of the one before it."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "chain", "ssor-pcg", {"omega": [1.0, 1.4, 1.8]}, context_features=["s"], max_in_flight=4
    )
    steps = 24
    A, forcing, scales = _problem(12, steps, seed=0)
    handle = client.store_matrix(A)
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
    _assert_steps(camp, ids, A, forcing, scales)
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


def _items_chain(
    camp: Any, handle: Any, forcing: list[Any], scales: list[float], batch: int
) -> list[int]:
    """Crank-Nicolson steps in submit_many calls of ``batch``: a step names the previous one
    as an earlier item of its call (``SolutionOf.item``), or by id across calls. ``forcing``:
    arrays (uploaded) or grid fields (formulas)."""
    ids: list[int] = []
    for start in range(0, len(scales), batch):
        items = []
        for k in range(start, min(start + batch, len(scales))):
            s, f = scales[k], forcing[k]
            if k > start:
                b, x0 = SolutionOf.item(k - start - 1, 1.0, -s, f), SolutionOf.item(k - start - 1)
            elif ids:
                b, x0 = SolutionOf(ids[-1], 1.0, -s, f), SolutionOf(ids[-1])
            else:
                b, x0 = f, None
            items.append((LinearSystem.affine(handle, b, alpha=1.0, beta=s), {"s": s}, {"x0": x0}))
        ids += camp.submit_many(items, tol=1e-10, max_iters=5000, return_solution=True)
    return ids


def test_a_chain_submitted_as_items_of_submit_many_calls(pg_settings: Settings) -> None:
    """Steps naming earlier items of their own call: ids reserved before the insert, each
    stored spec names the previous step's instance, and the solutions are the sequence's."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign(
        "items", "ssor-pcg", {"omega": [1.0, 1.4, 1.8]}, context_features=["s"], max_in_flight=3
    )
    steps = 14
    A, forcing, scales = _problem(10, steps, seed=1)
    n = A.shape[0]
    handle = client.store_matrix(A)
    other = client.create_campaign("interleaved", "sor", {"omega": [1.5]})
    other.submit(LinearSystem.affine(handle, np.ones(n), alpha=1.0))  # takes an id in between
    ids = _items_chain(camp, handle, forcing, scales, batch=5)
    assert ids == sorted(ids) and len(set(ids)) == steps
    with client.engine.connect() as conn:
        specs = dict(
            conn.execute(
                text("SELECT id, spec FROM instances WHERE id = ANY(:i)"), {"i": ids}
            ).all()
        )
    for k in range(1, steps):
        assert specs[ids[k]]["x0"]["solution_of"] == ids[k - 1]
        assert specs[ids[k]]["system"]["stored"]["b"]["solution_of"] == ids[k - 1]
    with LocalCluster(pg_settings, workers=1):
        counts = camp.wait(timeout=180)
    assert counts.get("done") == steps, counts
    _assert_steps(camp, ids, A, forcing, scales)
    client.close()


def test_submit_many_checks_what_an_item_reference_names(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign("item-checks", "sor", {"omega": [1.5]})
    small = client.store_matrix(_laplacian(5) + sp.identity(25))
    big = client.store_matrix(_laplacian(6) + sp.identity(36))
    ones = np.ones(25)

    def sys_(b: object, h: object = small) -> LinearSystem:
        return LinearSystem.affine(h, b)

    solved = {"return_solution": True}
    before = camp.counts()
    cases = [
        (
            [(sys_(ones), {}, solved), (sys_(ones), {}, {"x0": SolutionOf.item(1)})],
            "items[1].x0",
            "earlier item",
        ),
        (
            [(sys_(ones), {}, solved), (sys_(ones), {}, {"x0": SolutionOf.item(5)})],
            "items[1].x0",
            "earlier item",
        ),
        (
            [(sys_(ones), {}), (sys_(ones), {}, {"x0": SolutionOf.item(0)})],
            "items[1].x0",
            "without return_solution=True",
        ),
        (
            [(sys_(ones), {}, solved), (sys_(SolutionOf.item(0), big), {})],
            "items[1].system.b",
            "25 unknowns, not 36",
        ),
    ]
    for items, field, words in cases:
        with pytest.raises(InputError) as err:
            camp.submit_many(items)
        assert err.value.field == field and words in err.value.message, err.value
    with pytest.raises(InputError) as err:
        camp.submit(sys_(ones), x0=SolutionOf.item(0))
    assert err.value.field == "x0" and "submit_many" in err.value.message
    with pytest.raises(InputError):
        SolutionOf.item(-1)
    assert camp.counts() == before  # nothing written by a refused call
    client.close()


def test_a_chain_with_a_formula_forcing_on_a_threads_worker(pg_settings: Settings) -> None:
    """The heat example's shape: steps in submit_many calls naming the previous step, the
    forcing a GridField (a formula evaluated on the worker: no upload per step), run by a
    worker with the threads pool four in flight. Solutions equal the sequential solve."""
    from app import GridField
    from app.dev.local import LocalCluster

    settings = Settings(**{**pg_settings.__dict__, "worker_pool": "threads", "worker_prefetch": 4})
    client = Client(settings=settings)
    camp = client.create_campaign(
        "fields", "ssor-pcg", {"omega": [1.0, 1.4, 1.8]}, context_features=["s"], max_in_flight=4
    )
    m, steps = 11, 16
    A = _laplacian(m)
    scales = [0.05 + 0.4 * (k % 5) / 4 for k in range(steps)]
    fields = [GridField.gaussian(m, (0.5 + 0.3 * np.cos(k), 0.5), 0.15, 2.0) for k in range(steps)]
    handle = client.store_matrix(A)
    with client.engine.connect() as conn:
        blobs_before = conn.execute(text("SELECT count(*) FROM store_blobs")).scalar()
    ids = _items_chain(camp, handle, fields, scales, batch=6)
    with client.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM store_blobs")).scalar() == blobs_before
    with LocalCluster(settings, workers=1):
        counts = camp.wait(timeout=180)
    assert counts.get("done") == steps, counts
    _assert_steps(camp, ids, A, [f.values() for f in fields], scales)
    assert {r["worker"] for r in camp.results()} and all(
        r["status"] == "succeeded" for r in camp.results()
    )
    client.close()
