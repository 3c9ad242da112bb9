"""``shared-ts``: arms described by parameters share one model of the log cost, so a few
solves with one configuration say something about the configurations like it."""

from __future__ import annotations

import numpy as np
import pytest

from app.policies.arm_features import arm_features, parse_arm_label
from app.policies.registry import make_policy
from app.policies.shared_ts import SharedTSPolicy


def test_parameters_become_indicator_and_scaled_columns() -> None:
    values = [
        {"method": "cg", "preconditioner": "none"},
        {"method": "cg", "preconditioner": "ssor", "omega": 0.5},
        {"method": "cg", "preconditioner": "ssor", "omega": 1.5},
        {"method": "gmres", "preconditioner": "ilu", "drop_tol": 1e-2},
        {"method": "gmres", "preconditioner": "ilu", "drop_tol": 1e-4},
    ]
    G = arm_features(values)
    # drop_tol (log scale: 1e-2 -> 1, 1e-4 -> 0), its square, presence; method x2;
    # omega, its square, presence; preconditioner x3
    assert G.shape == (5, 3 + 2 + 3 + 3)
    assert np.array_equal(G[:, 0], [0, 0, 0, 1, 0]) and np.array_equal(G[:, 2], [0, 0, 0, 1, 1])
    assert np.array_equal(G[:, 3:5], [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    assert np.array_equal(G[:, 5], [0, 0, 1, 0, 0])  # omega scaled over the arms having it
    assert np.array_equal(G, arm_features(values))  # deterministic
    # a key with one value throughout says nothing
    assert arm_features([{"m": "cg", "k": 1}, {"m": "cg", "k": 2}]).shape == (2, 2)
    assert arm_features([]).shape == (0, 0)


def test_cost_table_labels_read_back_as_parameters() -> None:
    assert parse_arm_label("method=cg,preconditioner=ssor,omega=1.2") == {
        "method": "cg",
        "preconditioner": "ssor",
        "omega": 1.2,
    }
    assert parse_arm_label("1.25") == {"arm": 1.25} and parse_arm_label("x") == {"arm": "x"}


def _grouped() -> list[dict[str, object]]:
    return [{"pre": "none", "k": i} for i in range(6)] + [{"pre": "amg", "k": i} for i in range(6)]


def _p(pol: SharedTSPolicy, x: float = 0.0) -> np.ndarray:
    return pol.probabilities(np.array([x]), 123)


def test_what_one_configuration_shows_moves_its_group() -> None:
    """Seen: arm 0 (no preconditioner, 10x slower) and arm 6 (AMG). The unseen arms of the
    fast group take a share, those of the slow group none; with plain arms (no parameters)
    nothing carries over to the unseen ones."""
    rng = np.random.default_rng(0)
    shared = make_policy("shared-ts", 12, 1, arm_values=_grouped(), seed=1)
    plain = make_policy("shared-ts", 12, 1, seed=1)
    for _t in range(12):
        for pol in (shared, plain):
            x = np.array([rng.uniform(-1, 1)])
            pol.update(x, 0, 10.0 * rng.lognormal(0, 0.1))
            pol.update(x, 6, 1.0 * rng.lognormal(0, 0.1))
    ps, pp = _p(shared), _p(plain)  # type: ignore[arg-type]
    assert ps[7:].sum() > 0.3 and ps[1:6].sum() < 0.25 * ps[7:].sum()
    assert pp[7:].sum() < 0.5 * ps[7:].sum()


def test_learns_a_best_arm_that_moves_with_the_context() -> None:
    rng = np.random.default_rng(3)
    pol = make_policy("shared-ts", 12, 1, arm_values=_grouped(), seed=2)
    picks = []
    for t in range(300):
        x = float(rng.uniform(-1, 1))
        d = pol.choose(np.array([x]), t)
        good = d.arm < 6 if x < 0 else d.arm >= 6  # "none" wins left of 0, "amg" right
        picks.append(good)
        pol.update(np.array([x]), d.arm, (1.0 if good else 4.0) * rng.lognormal(0, 0.2))
    assert np.mean(picks[-100:]) > 0.9


def test_state_round_trips_and_a_burst_decides_as_one_by_one() -> None:
    rng = np.random.default_rng(5)
    a = make_policy("shared-ts", 12, 2, arm_values=_grouped(), seed=4)
    b = make_policy("shared-ts", 12, 2, arm_values=_grouped(), seed=4)
    for t in range(40):
        x = rng.uniform(0, 5, 2)
        arm = int(rng.integers(12))
        cost = 0.0 if t == 3 else float(rng.lognormal(0, 1))  # a zero cost is a cost
        a.update(x, arm, cost)
        b.update(x, arm, cost)
    c = make_policy("shared-ts", 12, 2, arm_values=_grouped(), seed=4)
    c.set_state(a.get_state())
    X = rng.uniform(0, 5, (8, 2))
    keys = list(range(100, 108))
    one = [c.choose(x, k) for x, k in zip(X, keys, strict=True)]
    assert one == a.choose_many(X, keys) == b.choose_many(X, keys)
    assert np.allclose(c.probabilities(X[0], 7), a.probabilities(X[0], 7))


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="shared_sd"):
        make_policy("shared-ts", 3, 1, config={"shared_sd": 0})
    with pytest.raises(ValueError, match="mc"):
        make_policy("shared-ts", 3, 1, config={"mc": 2})
    many = [{"m": f"x{i}", "v": float(i)} for i in range(200)]
    with pytest.raises(ValueError, match="model terms"):
        make_policy("shared-ts", 200, 3, arm_values=many)
