"""Chained instances without services: the wire form, and the worker's resolution of an
earlier solution from memory, from a store tag, or not yet (NotReady) and not at all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import text

from app.config import Settings
from tasks import chain
from tasks.errors import InputError
from tasks.kinds.linear import validate_solver_spec
from tasks.store import open as store_open
from tasks.store.blobs import csr_ref, vector_ref
from workers import chain as wchain
from workers import context as wcontext


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    wcontext.configure(Settings(home=tmp_path, chain_wait_seconds=0.5))
    wcontext.context().chain.recent.clear()
    yield store_open.current()[0]
    store_open._CURRENT.clear()
    wcontext.reset()


def _put(kind: str, value: object) -> dict[str, object]:
    ref, data = vector_ref(value) if kind == "vector" else csr_ref(value)
    store_open.current()[0].put(data)
    return ref


def test_wire_form_is_validated_field_by_field() -> None:
    ok = chain.validate({"solution_of": 3, "shape": [4]}, 4, "x0", has_matrix=False)
    assert ok == {"solution_of": 3, "shape": [4], "scale": 1.0, "times_A": 0.0, "plus": None}
    bad = [
        ({"solution_of": 0, "shape": [4]}, "x0.solution_of"),
        ({"solution_of": True, "shape": [4]}, "x0.solution_of"),
        ({"solution_of": 3, "shape": [5]}, "x0.shape"),
        ({"solution_of": 3, "shape": [4], "scale": float("nan")}, "x0.scale"),
        ({"solution_of": 3, "shape": [4], "times_A": 1.0}, "x0.times_A"),
        ({"solution_of": 3, "shape": [4], "plus": [1, 2, 3, 4]}, "x0.plus"),
        ({"solution_of": 3, "shape": [4], "extra": 1}, "x0.extra"),
    ]
    for value, field in bad:
        with pytest.raises(InputError) as err:
            chain.validate(value, 4, "x0", has_matrix=False)
        assert err.value.field == field, value
    with pytest.raises(InputError) as err:
        chain.SolutionOf(2, scale=float("inf"))
    assert err.value.field == "solution_of.scale"


def test_solver_spec_takes_chained_x0_and_right_hand_side(store) -> None:  # type: ignore[no-untyped-def]
    A = sp.identity(4, format="csr") * 2.0
    Aref = {**_put("csr", A), "diag_min": 2.0, "diag_max": 2.0, "symmetric": True}
    plus = chain.SolutionOf(7, 1.0, -0.5, np.ones(4)).to_wire(4, _put, "system.b")
    spec = {
        "system": {"stored": {"A": Aref, "b": plus, "alpha": 1.0, "beta": 0.1}},
        "x0": chain.SolutionOf(7).to_wire(4, _put),
        "return_solution": True,
    }
    out = validate_solver_spec(spec, require_spd=True)
    assert chain.parents(out) == [("x0", 7, 4), ("system.b", 7, 4)]
    # a chained x0 may not use the matrix of an inline system
    inline = {"n": 4, "indptr": A.indptr.tolist(), "indices": A.indices.tolist()}
    inline |= {"data": A.data.tolist(), "b": [1.0] * 4}
    with pytest.raises(InputError) as err:
        validate_solver_spec(
            {"system": inline, "x0": {"solution_of": 7, "shape": [4], "times_A": 1.0}}
        )
    assert err.value.field == "x0.times_A"


def test_resolution_from_memory_from_a_tag_not_yet_and_never(store) -> None:  # type: ignore[no-untyped-def]
    A = sp.diags([2.0, 3.0, 4.0]).tocsr()
    x = np.array([1.0, 2.0, 3.0])
    plus = np.array([0.5, 0.5, 0.5])
    wire = chain.SolutionOf(11, 2.0, -1.0, plus).to_wire(3, _put, "system.b")
    expect = 2.0 * x - A @ x + plus

    wchain.begin(11)
    ref, data = vector_ref(x)
    store.put(data)
    wchain.remember(x, ref)  # this process solved 11: kept in memory and tagged
    wchain.begin(12)
    np.testing.assert_allclose(wchain.resolve(wire, lambda: A, "system.b"), expect)

    wcontext.context().chain.recent.clear()  # another process: only the store's tag knows
    np.testing.assert_allclose(wchain.resolve(wire, lambda: A, "system.b"), expect)

    missing = chain.SolutionOf(99).to_wire(3, _put)
    with pytest.raises(wchain.NotReady):
        wchain.resolve(missing, None, "x0")
    wchain.begin(13, since=time.time() - 10.0)  # past BANDITQ_CHAIN_WAIT_SECONDS
    with pytest.raises(InputError) as err:
        wchain.resolve(missing, None, "x0")
    assert "BANDITQ_CHAIN_WAIT_SECONDS" in err.value.message

    failed = {"instance": 99, "spec": {"return_solution": True}}
    wchain.note_failure(failed, "invalid input: system.b: blob 1234 is not in the store\nmore")
    wchain.begin(14)
    with pytest.raises(InputError) as err:
        wchain.resolve(missing, None, "x0")
    assert "its trial failed (invalid input: system.b: blob 1234" in err.value.message


def test_retry_delays_start_at_once_and_stay_bounded() -> None:
    delays = [wchain.retry_delay(r) for r in range(40)]
    assert delays[0] == 0.0
    assert all(0 < d <= 0.5 for d in delays[1:])
    assert delays == sorted(delays)


def test_directory_store_tags_are_atomic_files_and_gc_drops_them(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from tasks.store.directory import DirectoryStore

    s = DirectoryStore(tmp_path / "store")
    assert s.get_tag("solution-1") is None
    s.set_tag("solution-1", {"sha256": "a" * 64, "kind": "vector"})
    s.set_tag("solution-2", {"error": "boom"})
    s.set_tag("solution-1", {"sha256": "b" * 64, "kind": "vector"})  # the latest wins
    assert s.get_tag("solution-1") == {"sha256": "b" * 64, "kind": "vector"}
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert s.drop_tags({"c" * 64}, datetime.now(UTC) - timedelta(hours=1)) == 0
    assert s.drop_tags({"b" * 64}, later) == 2  # the blob's tag, and the old error tag
    assert s.get_tag("solution-1") is None and s.get_tag("solution-2") is None


def test_item_references_get_reserved_ids_on_the_embedded_default(tmp_path: Path) -> None:
    """SQLite: the ids of a submit_many call are reserved past the largest id (under the
    write lock), inserted as given, and each item reference names its item's instance."""
    from app import LinearSystem, SolutionOf
    from app.client import Client

    with Client(settings=Settings(home=tmp_path / "home")) as client:
        camp = client.create_campaign("items", "sor", {"omega": [1.5]})
        A = sp.diags([-1.0, 3.0, -1.0], [-1, 0, 1], shape=(400, 400), format="csr")
        handle = client.store_matrix(A)
        first = camp.submit(LinearSystem.affine(handle, np.ones(400)), return_solution=True)
        items = [
            (LinearSystem.affine(handle, np.ones(400)), {}),
            (LinearSystem.affine(handle, SolutionOf.item(0, 0.5)), {}, {"x0": SolutionOf.item(0)}),
            (LinearSystem.affine(handle, SolutionOf(first)), {}, {"x0": SolutionOf.item(1)}),
        ]
        ids = camp.submit_many(items, return_solution=True)
        assert ids == [first + 1, first + 2, first + 3]
        with client.engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, spec FROM instances")).all())
        spec = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in rows.items()}
        assert spec[ids[1]]["x0"]["solution_of"] == ids[0]
        assert spec[ids[1]]["system"]["stored"]["b"]["solution_of"] == ids[0]
        assert spec[ids[2]]["x0"]["solution_of"] == ids[1]
        assert spec[ids[2]]["system"]["stored"]["b"]["solution_of"] == first
        assert "item" not in json.dumps(spec[ids[2]])


def test_a_stale_attempts_failure_never_hides_a_good_solution(store) -> None:  # type: ignore[no-untyped-def]
    x = np.array([1.0, 2.0])
    ref, data = vector_ref(x)
    store.put(data)
    wchain.begin(21, database="db-a", campaign="c", attempt=2)
    wchain.remember(x, ref)
    tag = store.get_tag(chain.solution_tag(21, "db-a"))
    assert tag["sha256"] == ref["sha256"] and tag["campaign"] == "c" and tag["attempt"] == 2
    stale = {"instance": 21, "database": "db-a", "attempt": 1, "spec": {"return_solution": True}}
    wchain.note_failure(stale, "attempt 1 timed out")  # arrives after the good attempt
    assert store.get_tag(chain.solution_tag(21, "db-a"))["sha256"] == ref["sha256"]
    wcontext.context().chain.recent.clear()
    wchain.begin(22, database="db-a")
    wire = chain.SolutionOf(21).to_wire(2, _put)
    np.testing.assert_allclose(wchain.resolve(wire, None, "x0"), x)


def test_a_reset_database_with_a_kept_store_never_reads_an_old_runs_solution(store) -> None:  # type: ignore[no-untyped-def]
    old = np.array([9.0, 9.0])
    ref, data = vector_ref(old)
    store.put(data)
    wchain.begin(5, database="old-db")
    wchain.remember(old, ref)
    wcontext.context().chain.recent.clear()
    # the database was reset: instance 5 exists again, under a new identity, not solved yet
    wchain.begin(6, database="new-db")
    with pytest.raises(wchain.NotReady):
        wchain.resolve(chain.SolutionOf(5).to_wire(2, _put), None, "x0")
