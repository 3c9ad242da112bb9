"""Grid fields (``tasks.gridfield``): a vector given by a formula, evaluated on the worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from app.config import Settings
from tasks import chain, gridfield
from tasks.errors import InputError
from tasks.gridfield import GridField
from tasks.kinds.linear import validate_solver_spec
from tasks.linsys import LinearSystem, StoredMatrix
from tasks.store import open as store_open
from tasks.store.blobs import csr_ref
from workers import chain as wchain
from workers import context as wcontext
from workers.kinds.solvers import prepared


def _bump(m: int, center: tuple[float, ...], width: float, height: float) -> np.ndarray:
    g = np.arange(1, m + 1) / (m + 1)
    axes = np.meshgrid(*([g] * len(center)), indexing="ij")
    r2 = sum((X - c) ** 2 for X, c in zip(axes, center, strict=True))
    return (height * np.exp(-r2 / (2 * width**2))).ravel()


@pytest.mark.parametrize(
    "m, center", [(7, (0.3,)), (9, (0.25, 0.7)), (5, (0.5, 0.1, 0.9)), (30, (0.8, 0.2))]
)
def test_values_are_the_formula_on_the_interior_grid_in_row_major_order(
    m: int, center: tuple[float, ...]
) -> None:
    f = GridField.gaussian(m, center, width=0.07, height=3.5)
    assert f.n == m ** len(center)
    np.testing.assert_allclose(f.values(), _bump(m, center, 0.07, 3.5), rtol=1e-13, atol=1e-300)
    # the wire form round-trips and evaluates the same
    np.testing.assert_array_equal(
        gridfield.evaluate(gridfield.validate(f.to_wire(), f.n, "b")), f.values()
    )


def test_bad_fields_name_the_field() -> None:
    good = {"grid_field": "gaussian", "m": 4, "center": [0.5, 0.5], "width": 0.1}
    assert gridfield.validate(good, 16, "b")["height"] == 1.0
    bad = [
        ({**good, "grid_field": "sine"}, "b.grid_field"),
        ({**good, "m": 0}, "b.m"),
        ({**good, "m": 2.5}, "b.m"),
        ({**good, "center": []}, "b.center"),
        ({**good, "center": [0.1, 0.2, 0.3, 0.4]}, "b.center"),
        ({**good, "center": [0.1, float("nan")]}, "b.center"),
        ({**good, "width": 0.0}, "b.width"),
        ({**good, "width": "wide"}, "b.width"),
        ({**good, "height": float("inf")}, "b.height"),
        ({**good, "colour": 1}, "b.colour"),
        ({**good, "m": 5}, "b"),  # 25 entries, not 16
    ]
    for value, field in bad:
        with pytest.raises(InputError) as err:
            gridfield.validate(value, 16, "b")
        assert err.value.field == field, value


def test_a_field_is_a_right_hand_side_and_a_chained_term_without_any_upload(tmp_path: Path) -> None:
    wcontext.configure(Settings(home=tmp_path))
    wcontext.context().chain.recent.clear()
    try:
        m = 6
        A = sp.diags(np.linspace(1.0, 2.0, m * m)).tocsr()
        ref, data = csr_ref(A)
        store_open.current()[0].put(data)
        handle = StoredMatrix({**ref, **StoredMatrix.describe(A)})
        f = GridField.gaussian(m, (0.4, 0.6), 0.2, 2.0)
        puts: list[str] = []

        def put(kind: str, value: object) -> dict[str, object]:
            puts.append(kind)
            raise AssertionError("nothing is uploaded for a grid field")

        first = LinearSystem.affine(handle, f, alpha=1.0, beta=0.5).to_spec(put, 0)
        spec = validate_solver_spec({"system": first})
        P, b, _hit, _setup = prepared(spec)
        np.testing.assert_allclose(b, f.values())
        # (I - 0.5 A) x + f, x an earlier solution held by this process
        step = chain.SolutionOf(5, 1.0, -0.5, f).to_wire(m * m, put, "system.b")
        assert step["plus"]["grid_field"] == "gaussian"
        x = np.linspace(-1.0, 1.0, m * m)
        wchain.begin(5)
        wcontext.context().chain.recent[(None, 5)] = x
        out = wchain.resolve(step, lambda: A, "system.b")
        np.testing.assert_allclose(out, x - 0.5 * (A @ x) + f.values())
        assert puts == []
        with pytest.raises(InputError) as err:
            chain.SolutionOf(5, plus=GridField.gaussian(m + 1, (0.5, 0.5), 0.1)).to_wire(
                m * m, put, "system.b"
            )
        assert err.value.field == "system.b.plus"
        with pytest.raises(InputError) as err:
            LinearSystem.affine(handle, GridField.gaussian(m, (0.5,), 0.1), alpha=1.0)
        assert err.value.field == "system.b"
    finally:
        store_open._CURRENT.clear()
        wcontext.context().chain.recent.clear()
