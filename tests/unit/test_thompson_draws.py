"""Thompson sampling's Monte Carlo choice (app/policies/thompson_draws.py): antithetic
single-precision draws that estimate the right probabilities, and one pick per row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.policies.thompson_draws import choice_distributions, pick, pick_many


def _rngs(n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(k) for k in range(n)]


def test_the_probabilities_match_the_exact_ones() -> None:
    """Two independent arms: P(arm 0 cheaper) = Phi((m1 - m0) / sqrt(v0 + v1)); and with
    a basis mapping coefficients to arms, the same through the map."""
    mean = np.array([[0.0, 0.3], [1.0, 0.2]])
    cov = np.stack([np.diag([0.2, 0.3]), np.diag([0.05, 0.5])])
    p, u = choice_distributions(mean, cov, _rngs(2), 4096, None, 0.0)
    for i in range(2):
        m0, m1 = mean[i]
        v0, v1 = np.diag(cov[i])
        exact = 0.5 * math.erfc(-(m1 - m0) / math.sqrt(2 * (v0 + v1)))
        assert p[i, 0] == pytest.approx(exact, abs=0.03)
        assert p[i].sum() == pytest.approx(1.0)
    assert np.all((u >= 0) & (u < 1))
    # three arms as combinations of the two coefficients: against brute-force draws
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [1.5, -0.5]])
    q, _u = choice_distributions(mean[:1], cov[:1], _rngs(1), 4096, basis, 0.0)
    coef = np.random.default_rng(9).multivariate_normal(mean[0], cov[0], size=200_000)
    brute = np.bincount(np.argmin(coef @ basis.T, axis=1), minlength=3) / len(coef)
    assert q[0] == pytest.approx(brute, abs=0.03)
    assert q[0, 2] > 0.05  # the combination is cheapest on some draws


def test_antithetic_pairs_split_two_equal_arms_exactly() -> None:
    """Equal means: each pair (z, -z) picks one arm each way, so each gets exactly half."""
    mean = np.zeros((3, 2))
    cov = np.stack([np.eye(2) * v for v in (0.1, 1.0, 5.0)])
    p, _u = choice_distributions(mean, cov, _rngs(3), 256, None, 0.0)
    assert np.array_equal(p, np.full((3, 2), 0.5))


def test_a_decision_depends_only_on_its_own_generator() -> None:
    mean = np.array([[0.0, 0.1, 0.2], [0.2, 0.0, 0.1]])
    cov = np.stack([np.eye(3) * 0.3, np.eye(3) * 0.1])
    both, ub = choice_distributions(mean, cov, _rngs(2), 256, None, 0.05)
    one, uo = choice_distributions(mean[1:], cov[1:], [np.random.default_rng(1)], 256, None, 0.05)
    assert np.array_equal(both[1], one[0]) and ub[1] == uo[0]


def test_pick_many_is_pick_row_by_row_and_never_an_excluded_arm() -> None:
    rng = np.random.default_rng(3)
    P = rng.random((50, 6))
    P[P < 0.3] = 0.0
    P[:, 0] += 1e-3  # every row has an arm
    P /= P.sum(axis=1, keepdims=True)
    U = rng.random(50)
    U[:3] = [0.0, 1.0 - 1e-16, 0.999999]  # the edges of the cumulative sum
    many = pick_many(P, U)
    assert many == [pick(p, float(u)) for p, u in zip(P, U, strict=True)]
    for p, d in zip(P, many, strict=True):
        assert p[d.arm] > 0.0 and d.propensity == p[d.arm]
        assert d.reason == ("exploit" if p[d.arm] >= 0.5 else "explore")
