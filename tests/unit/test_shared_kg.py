"""``shared-kg``: shared-ts's model with decisions by the online knowledge gradient
(app/policies/knowledge_gradient.py, app/policies/shared_kg.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.policies.knowledge_gradient import expected_costs, knowledge_gradient, stopped_costs
from app.policies.registry import make_policy
from app.policies.shared_kg import SharedKGPolicy


def _kg_monte_carlo(mu: np.ndarray, cov: np.ndarray, noise: float, a: int) -> float:
    """The fall of the cheapest expected cost after one result of arm ``a``, by simulation:
    draw the arms' true mean log costs, then the result, then the Gaussian update."""
    rng = np.random.default_rng(0)
    n = 400_000
    theta = rng.multivariate_normal(mu, cov, size=n)
    y = theta[:, a] + rng.standard_normal(n) * np.sqrt(noise)
    gain = cov[:, a] / (cov[a, a] + noise)
    mu_new = mu[None, :] + (y - mu[a])[:, None] * gain[None, :]
    var_new = np.diag(cov) - gain * cov[:, a]
    after = np.exp(mu_new + var_new / 2).min(axis=1).mean()
    return float(np.exp(mu + np.diag(cov) / 2).min() - after)


def test_knowledge_gradient_matches_simulation() -> None:
    mu = np.array([0.0, 0.3, 0.1])
    cov = np.array([[0.04, 0.0, 0.0], [0.0, 0.5, 0.2], [0.0, 0.2, 0.3]])
    noise = 0.1
    cross = cov[:, None, :]  # (a, one future context, j): the current context again
    kg = knowledge_gradient(mu[None], np.diag(cov)[None], cross, np.diag(cov), noise, 0.0)
    for a in range(3):
        # quadrature over a minimum with kinks: within a few percent
        assert kg[a] == pytest.approx(_kg_monte_carlo(mu, cov, noise, a), rel=0.05, abs=1e-3)
    assert kg[1] > kg[0] > 0.0  # the uncertain arm's result is worth more
    # an arm known exactly, alone: nothing to learn
    zero = knowledge_gradient(
        mu[None, :1], np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1), noise, 0.0
    )
    assert zero[0] == pytest.approx(0.0, abs=1e-12)


def test_stopped_costs_match_simulation_and_bound_a_bad_arm() -> None:
    mu = np.array([0.0, 1.0, 4.0])  # arm 0 the fallback; arm 2 ~55x dearer
    var = np.array([0.01, 0.2, 0.5])
    noise, factor = 0.05, 2.0
    paid = stopped_costs(mu, var, noise, 0, factor, 0.0)
    rng = np.random.default_rng(1)
    b = factor * np.exp(mu[0])
    for a in (1, 2):
        c = np.exp(mu[a] + rng.standard_normal(400_000) * np.sqrt(var[a] + noise))
        fb = np.exp(mu[0] + (var[0] + noise) / 2)
        sim = np.where(c > b, b + fb, c).mean()
        assert paid[a] == pytest.approx(sim, rel=0.01)
    assert paid[0] == pytest.approx(float(expected_costs(mu, var + noise, 0.0)[0]))
    assert paid[2] < b + np.exp(mu[0] + (var[0] + noise) / 2) + 1e-9  # never over budget + fallback
    assert expected_costs(mu, var + noise, 0.0)[2] > 10 * paid[2]


def _arms() -> list[dict[str, object]]:
    return [{"pre": "ssor", "omega": w} for w in (1.0, 1.2, 1.4, 1.6, 1.8)] + [
        {"pre": "amg", "k": k} for k in range(3)
    ]


def _cost(arm: int, rng: np.random.Generator) -> float:
    base = [2.0, 1.6, 1.3, 1.0, 1.2, 3.0, 3.2, 3.1][arm]
    return base * float(rng.lognormal(0.0, 0.1))


def _run(pol: object, steps: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    chosen = []
    for t in range(steps):
        d = pol.choose(np.array([0.5]), t)  # type: ignore[attr-defined]
        chosen.append(d.arm)
        pol.update(np.array([0.5]), d.arm, _cost(d.arm, rng))  # type: ignore[attr-defined]
    return chosen


def test_it_finds_the_cheapest_configuration_and_stays() -> None:
    """On the same costs Thompson sampling mostly settles on arm 3 (a draw still picks its
    10%- and 30%-dearer neighbours now and then), after trying every arm; the knowledge
    gradient tries only those a result could make the cheapest, and then only arm 3."""
    kg = _run(make_policy("shared-kg", 8, 1, arm_values=_arms(), seed=0), 60)
    ts = _run(make_policy("shared-ts", 8, 1, arm_values=_arms(), seed=0), 60)
    assert set(kg[-40:]) == {3} and ts[-40:].count(3) >= 35, (kg, ts)
    assert len(set(kg)) < len(set(ts)) == 8


def test_a_short_horizon_explores_less_than_a_long_one() -> None:
    short = make_policy("shared-kg", 8, 1, arm_values=_arms(), seed=0, config={"horizon": 5})
    long = make_policy("shared-kg", 8, 1, arm_values=_arms(), seed=0, config={"horizon": 10_000})
    assert len(set(_run(short, 5))) < len(set(_run(long, 5)))
    with pytest.raises(ValueError, match="policy_config.horizon"):
        make_policy("shared-kg", 8, 1, arm_values=_arms(), config={"horizon": 0})


def test_decisions_are_deterministic_and_survive_a_state_round_trip() -> None:
    a = make_policy("shared-kg", 8, 1, arm_values=_arms(), seed=0)
    _run(a, 10)
    b = make_policy("shared-kg", 8, 1, arm_values=_arms(), seed=0)
    b.set_state(a.get_state())
    x = np.array([0.5])
    da, db = a.choose(x, 99), b.choose(x, 7)
    assert da == db and da.propensity == 1.0
    p = a.probabilities(x, 1)
    assert p[da.arm] == 1.0 and p.sum() == 1.0
    # restricted to other arms, the best of those by the same index
    allowed = np.ones(8, dtype=bool)
    allowed[da.arm] = False
    assert a.choose_among(x, 1, allowed).arm != da.arm


def test_the_fallback_budget_tells_it_what_a_stopped_trial_costs() -> None:
    pol = make_policy(
        "shared-kg", 8, 1, arm_values=_arms(), config={"fallback": {"arm": 5, "budget": 2.0}}
    )
    inner = pol.inner  # type: ignore[attr-defined]
    assert isinstance(inner, SharedKGPolicy) and inner.stop == (5, 2.0)
    d = pol.choose(np.array([0.5]), 0)
    assert d.arm == 5 and d.reason == "fallback:first"


def test_costs_spanning_many_decades_leave_it_finite() -> None:
    """Costs of 0 and 1e12 among the results (a noise estimate in the hundreds, in log
    cost): decisions stay finite and defined, with and without a budget."""
    for config in ({}, {"fallback": {"arm": 0, "budget": 2.0}}):
        pol = make_policy("shared-kg", 4, 2, seed=1, config=dict(config))
        rng = np.random.default_rng(0)
        for i in range(12):
            pol.update(rng.random(2), i % 4, [0.0, 1.0, 1e12, 3.0][i % 4])
        inner = getattr(pol, "inner", pol)
        assert isinstance(inner, SharedKGPolicy) and inner.s2 > 100.0
        idx, cost = inner.index(np.array([0.3, 0.7]))
        assert np.all(np.isfinite(idx)) and np.all(np.isfinite(cost))
        assert 0 <= pol.choose(np.array([0.3, 0.7]), 1).arm < 4
