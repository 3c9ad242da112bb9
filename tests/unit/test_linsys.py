"""Linear-system validation: every malformed input names its field."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tasks.errors import InputError
from tasks.linsys import LinearSystem, build_system, laplace2d

GOOD = laplace2d(3, 0.1)
B = np.ones(9)

CASES = [
    ("non-square", lambda: LinearSystem(np.ones((2, 3)), [1, 1]), "system.A"),
    ("empty", lambda: LinearSystem(np.zeros((0, 0)), []), "system.A"),
    ("1-D matrix", lambda: LinearSystem(np.ones(3), [1, 1, 1]), "system.A"),
    ("complex", lambda: LinearSystem(np.eye(2) * (1 + 1j), [1, 1]), "system.A"),
    (
        "object dtype",
        lambda: LinearSystem(np.array([[1, "a"], [0, 1]], dtype=object), [1, 1]),
        "system.A",
    ),
    ("nan in A", lambda: LinearSystem(np.array([[1.0, np.nan], [0, 1]]), [1, 1]), "system.data"),
    ("inf in b", lambda: LinearSystem(np.eye(2), [1, np.inf]), "system.b"),
    ("short b", lambda: LinearSystem(GOOD, np.ones(8)), "system.b"),
    ("2-D b", lambda: LinearSystem(GOOD, np.ones((9, 1))), "system.b"),
    ("zero b", lambda: LinearSystem(GOOD, np.zeros(9)), "system.b"),
    (
        "zero diagonal",
        lambda: LinearSystem(np.array([[0.0, 1], [1, 1]]), [1, 1]),
        "system.diagonal",
    ),
    ("negative diagonal", lambda: LinearSystem(-sp.identity(2), [1, 1]), "system.diagonal"),
    (
        "csr indptr length",
        lambda: build_system(
            {"n": 2, "indptr": [0, 1], "indices": [0], "data": [1.0], "b": [1, 1]}
        ),
        "system.indptr",
    ),
    (
        "csr decreasing indptr",
        lambda: build_system(
            {"n": 2, "indptr": [0, 2, 1], "indices": [0, 1], "data": [1.0, 1.0], "b": [1, 1]}
        ),
        "system.indptr",
    ),
    (
        "csr index out of range",
        lambda: build_system(
            {"n": 2, "indptr": [0, 1, 2], "indices": [0, 5], "data": [1.0, 1.0], "b": [1, 1]}
        ),
        "system.indices",
    ),
    (
        "csr data/indices mismatch",
        lambda: build_system(
            {"n": 2, "indptr": [0, 1, 2], "indices": [0, 1], "data": [1.0], "b": [1, 1]}
        ),
        "system.indices",
    ),
    (
        "csr string data",
        lambda: build_system({"n": 1, "indptr": [0, 1], "indices": [0], "data": ["x"], "b": [1]}),
        "system.data",
    ),
    (
        "csr n not int",
        lambda: build_system(
            {"n": "2", "indptr": [0, 1, 2], "indices": [0, 1], "data": [1, 1], "b": [1, 1]}
        ),
        "system.n",
    ),
    (
        "generator unknown",
        lambda: build_system({"generator": "poisson3d", "m": 3}),
        "system.generator",
    ),
    ("generator m zero", lambda: LinearSystem.laplace2d(0), "system.m"),
    ("generator m float", lambda: LinearSystem.laplace2d(2.5), "system.m"),  # type: ignore[arg-type]
    ("generator shift nan", lambda: LinearSystem.laplace2d(3, float("nan")), "system.shift"),
    ("generator shift kills diagonal", lambda: LinearSystem.laplace2d(3, -4.0), "system.shift"),
    ("generator negative seed", lambda: LinearSystem.laplace2d(3, 0.0, -1), "system.seed"),
    ("not a dict", lambda: build_system([1, 2]), "system"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("label", "make", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_systems_name_the_field(label: str, make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        make()
    assert info.value.field == field, (label, str(info.value))


def test_good_system_round_trips_through_the_spec() -> None:
    sys_ = LinearSystem(GOOD, B)
    A, b = sys_.build()
    assert (A != GOOD).nnz == 0
    np.testing.assert_array_equal(b, B)
    again = LinearSystem.from_spec(sys_.to_spec())
    assert again.to_spec() == sys_.to_spec()


def test_dense_input_equals_sparse_input() -> None:
    assert LinearSystem(GOOD.toarray(), B).to_spec() == LinearSystem(GOOD, B).to_spec()


def test_generator_is_deterministic_and_small_on_the_wire() -> None:
    s = LinearSystem.laplace2d(10, 0.2, seed=5)
    A1, b1 = s.build()
    A2, b2 = LinearSystem.from_spec(s.to_spec()).build()
    np.testing.assert_array_equal(b1, b2)
    assert A1.shape == (100, 100) and np.allclose(A1.diagonal(), 4.2)
    assert np.linalg.norm(b1) <= 10.0  # the paper's rhs: norm at most sqrt(n)
    assert len(s.to_spec()) == 4


def test_spec_key_is_equal_for_equal_specs_and_differs_on_any_value() -> None:
    """The worker's cache key of an inline system: the same spec (keys in any order) has one
    key; one changed number, a changed shape, ints against floats, a string or a ragged list
    each give another."""
    from tasks.linsys import spec_key

    A = sp.random(30, 30, density=0.2, format="csr", random_state=1) + sp.eye(30)
    A = sp.csr_matrix(A)
    base = {
        "n": 30,
        "indptr": A.indptr.tolist(),
        "indices": A.indices.tolist(),
        "data": A.data.tolist(),
        "b": [1.0] * 30,
    }
    same = dict(reversed(list(base.items())))
    assert spec_key(base) == spec_key(same)
    changed = {**base, "data": [*base["data"][:-1], base["data"][-1] + 1e-12]}
    assert spec_key(changed) != spec_key(base)
    keys = {
        spec_key({"x": [1, 2, 3]}),
        spec_key({"x": [1.0, 2.0, 3.0]}),
        spec_key({"x": [[1, 2], [3, 4]]}),
        spec_key({"x": [1, 2, 3, 4]}),
        spec_key({"x": [[1, 2], [3]]}),
        spec_key({"x": ["1", 2]}),
        spec_key({"x": ["1", 3]}),
        spec_key({"x": []}),
        spec_key({"y": []}),
        spec_key({"x": {"a": 1}}),
        spec_key({"x": {"a": 2}}),
    }
    assert len(keys) == 11
