"""evidence-ts: structures weighted by their predictive evidence on the campaign's own data.
Recovered on synthetic data drawn from each structure: the context-free structure wins where
the context explains nothing (and the policy then plays like the best fixed arm), the
contextual one where it does."""

from __future__ import annotations

import numpy as np

from app.policies.evidence import EvidenceTSPolicy


def _feed(policy: EvidenceTSPolicy, contextual: bool, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    K = policy.n_arms
    omegas = np.linspace(1.0, 1.95, K)
    for _t in range(n):
        x = rng.uniform(0.0, 1.0, policy.n_features)
        arm = int(rng.integers(K))
        best = 1.2 + 0.6 * x[0] if contextual else 1.5
        cost = 20.0 * np.exp(4.0 * (omegas[arm] - best) ** 2 + rng.normal(0.0, 0.05))
        policy.update(x, arm, float(cost))


def test_the_context_free_structure_wins_where_the_context_explains_nothing() -> None:
    p = EvidenceTSPolicy(12, 2, arms=np.linspace(1.0, 1.95, 12)[:, None], seed=0)
    assert p.labels == ["contextual", "contextual, no profile coupling", "context-free"]
    _feed(p, contextual=False, n=200, seed=1)
    w = p.weights()
    assert w[2] > 0.9, dict(zip(p.labels, w, strict=True))


def test_the_contextual_structure_wins_where_the_context_explains_the_costs() -> None:
    p = EvidenceTSPolicy(12, 1, arms=np.linspace(1.0, 1.95, 12)[:, None], seed=0)
    assert p.labels == ["contextual", "context-free"]
    _feed(p, contextual=True, n=200, seed=2)
    w = p.weights()
    assert w[0] > 0.9, dict(zip(p.labels, w, strict=True))
    # and its choice follows the context: a low and a high context pick different omegas
    lo, hi = p.best_arm(np.array([0.05])), p.best_arm(np.array([0.95]))
    assert hi > lo


def test_choices_are_a_proper_mixture_and_the_state_round_trips() -> None:
    p = EvidenceTSPolicy(8, 1, arms=np.linspace(1.0, 1.9, 8)[:, None], seed=3)
    _feed(p, contextual=True, n=60, seed=4)
    x = np.array([0.3])
    probs = p.probabilities(x, key=11)
    assert np.isclose(probs.sum(), 1.0) and (probs >= 0).all()
    d = p.choose(x, key=11)
    assert 0 <= d.arm < 8 and np.isclose(d.propensity, probs[d.arm])
    q = EvidenceTSPolicy(8, 1, arms=np.linspace(1.0, 1.9, 8)[:, None], seed=3)
    q.set_state(p.get_state())
    np.testing.assert_allclose(q.weights(), p.weights())
    assert q.choose(x, key=11) == d
