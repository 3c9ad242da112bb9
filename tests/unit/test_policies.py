"""One contract suite for every policy, plus learning checks on a synthetic cost table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.offline.replay import replay
from app.offline.tables import CostTable
from app.policies.registry import DEFAULT_POLICY, make_policy
from app.policies.smooth_ts import SmoothTSPolicy
from tasks.plugins import POLICIES_GROUP, names

NAMES = names(POLICIES_GROUP)
K = 8
ARMS = np.linspace(1.0, 1.9, K)


def synthetic_table(T: int = 600, d: int = 1, seed: int = 0) -> CostTable:
    """V-shaped log-cost in the arm whose minimum moves with the context (like SOR)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(T, d))
    best = 1.45 + 0.35 * np.tanh(X.sum(axis=1))  # optimum moves with the context
    logc = 3.0 + 6.0 * np.abs(ARMS[None, :] - best[:, None]) + 0.5 * X[:, :1]
    costs = np.exp(logc + 0.02 * rng.standard_normal((T, K)))
    return CostTable(X, ARMS.copy(), costs, [f"x{j}" for j in range(d)], [])


def _policy(name: str, d: int = 1, seed: int = 3):  # type: ignore[no-untyped-def]
    return make_policy(name, K, d, arms=ARMS[:, None], seed=seed)


def _train(pol, tab: CostTable, n: int = 60) -> None:  # type: ignore[no-untyped-def]
    for t in range(n):
        d = pol.choose(tab.contexts[t], key=t)
        pol.update(tab.contexts[t], d.arm, float(tab.costs[t, d.arm]))


@pytest.mark.parametrize("name", NAMES)
def test_choices_are_valid_arms_with_propensities(name: str) -> None:
    tab = synthetic_table(200)
    pol = _policy(name)
    for t in range(80):
        d = pol.choose(tab.contexts[t], key=t)
        assert 0 <= d.arm < K
        assert 0.0 < d.propensity <= 1.0
        assert isinstance(d.reason, str) and d.reason
        pol.update(tab.contexts[t], d.arm, float(tab.costs[t, d.arm]))
    assert pol.n_updates == 80


@pytest.mark.parametrize("name", NAMES)
def test_choose_is_pure_and_deterministic_per_key(name: str) -> None:
    tab = synthetic_table(100)
    a, b = _policy(name), _policy(name)
    _train(a, tab)
    _train(b, tab)
    x = tab.contexts[70]
    assert [a.choose(x, k) for k in range(20)] == [b.choose(x, k) for k in range(20)]
    before = json.dumps(a.get_state())
    a.choose(x, 5)
    assert json.dumps(a.get_state()) == before  # choose never changes the state


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_json_and_gives_the_same_choices(name: str) -> None:
    tab = synthetic_table(150)
    live = _policy(name)
    _train(live, tab, 90)
    restored = _policy(name)
    restored.set_state(json.loads(json.dumps(live.get_state())))
    for t in range(90, 130):  # keep learning side by side after the restore
        x = tab.contexts[t]
        d1, d2 = live.choose(x, t), restored.choose(x, t)
        assert d1 == d2
        live.update(x, d1.arm, float(tab.costs[t, d1.arm]))
        restored.update(x, d2.arm, float(tab.costs[t, d2.arm]))


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_are_a_distribution(name: str) -> None:
    tab = synthetic_table(100)
    pol = _policy(name)
    _train(pol, tab, 40)
    p = pol.probabilities(tab.contexts[50], key=50)
    assert p.shape == (K,) and np.all(p >= 0) and abs(p.sum() - 1.0) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_two_feature_contexts_and_no_context(name: str) -> None:
    for d in (0, 2):
        tab = synthetic_table(60, d=max(d, 1))
        ctx = tab.contexts if d else np.zeros((tab.T, 0))
        pol = _policy(name, d=d)
        for t in range(30):
            dec = pol.choose(ctx[t], key=t)
            assert 0 <= dec.arm < K and 0.0 < dec.propensity <= 1.0, (d, t, dec)
            pol.update(ctx[t], dec.arm, float(tab.costs[t, dec.arm]))
        assert pol.n_updates == 30
        clone = _policy(name, d=d)
        clone.set_state(json.loads(json.dumps(pol.get_state(), allow_nan=False)))
        for t in range(30, 40):
            assert clone.choose(ctx[t], key=t) == pol.choose(ctx[t], key=t), (d, t)


def _calls_per_update(pol, tab: CostTable, lo: int, hi: int) -> float:  # type: ignore[no-untyped-def]
    """Python-level calls made by ``update`` (deterministic, unlike wall time)."""
    import sys

    calls = [0]

    def count(_frame: object, event: str, _arg: object) -> None:
        if event in ("call", "c_call"):
            calls[0] += 1

    sys.setprofile(count)
    try:
        for t in range(lo, hi):
            pol.update(tab.contexts[t], t % K, float(tab.costs[t, t % K]))
    finally:
        sys.setprofile(None)
    return calls[0] / (hi - lo)


@pytest.mark.parametrize("name", ["smooth-ts", "linucb", "squarecb"])
def test_update_work_is_amortized_constant_and_state_bounded(name: str) -> None:
    """Per-update work (counted calls, deterministic, not timed) amortized over a window is
    the same after 300 and after 2400 updates (smooth-ts refits at doubling sizes, so each
    window holds one refit), and the state stops growing once the buffer is full; the
    benchmarks measure the seconds."""
    tab = synthetic_table(4800)
    pol = _policy(name)
    _train(pol, tab, 300)
    early = _calls_per_update(pol, tab, 300, 600)
    for t in range(600, 2400):
        pol.update(tab.contexts[t], t % K, float(tab.costs[t, t % K]))
    late = _calls_per_update(pol, tab, 2400, 4800)
    assert late <= early * 1.1, (early, late)
    bounded = _policy(name)
    if name == "smooth-ts":
        bounded.buffer_size = 256
    else:
        bounded.model.buffer_size = 256
    sizes = []
    for t in range(1200):
        bounded.update(tab.contexts[t], t % K, float(tab.costs[t, t % K]))
        if t in (599, 1199):
            sizes.append(len(json.dumps(bounded.get_state())))
    assert sizes[1] <= sizes[0] * 1.01, sizes


def test_default_policy_learns_the_moving_optimum() -> None:
    tab = synthetic_table(800)
    out = replay(tab, DEFAULT_POLICY, seed=0)
    rnd = replay(tab, "random", seed=0)
    assert out["ratio_to_oracle"] < 1.25
    assert out["ratio_to_oracle"] < rnd["ratio_to_oracle"] / 2
    assert out["ratio_to_best_fixed"] < 1.0  # contextual beats any single arm here


def test_fixed_and_unknown_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown"):
        make_policy("nope", 3, 1)
    with pytest.raises(ValueError, match="policy_config.arm"):
        make_policy("fixed", 3, 1, config={"arm": 5})
    with pytest.raises(ValueError, match="policy_config"):
        make_policy("epsilon-greedy", 3, 1, config={"bogus": 1})


@pytest.mark.parametrize("d", [1, 2])
def test_smooth_ts_lazy_downdates_keep_the_same_posterior(d: int) -> None:
    """Pending rank-one downdates (folded every ``lazy_rank`` results) give the posterior the
    eager updates give: same mean, same covariance, same choices, same state."""
    from app.policies.registry import make_policy

    rng = np.random.default_rng(d)
    arms = np.linspace(1.0, 1.9, 12)[:, None]
    lazy = make_policy("smooth-ts", 12, d, arms=arms, config={"lazy_rank": 5})
    eager = make_policy("smooth-ts", 12, d, arms=arms, config={"lazy_rank": 0})
    for t in range(300):  # past refits (range growth, doublings) and many folds
        x = rng.uniform(0, 1 + t / 100, d)
        a, b = lazy.choose(x, key=t), eager.choose(x, key=t)
        assert a.arm == b.arm and abs(a.propensity - b.propensity) < 0.02
        arm = int(rng.integers(12))
        c = float(np.exp(2 + 3 * (arms[arm, 0] - 1.3 - 0.2 * x[0]) ** 2 + rng.normal(0, 0.1)))
        lazy.update(x, arm, c)
        eager.update(x, arm, c)
    assert lazy.r > 0  # some downdates are pending now
    S_true = lazy.S - lazy.U[:, : lazy.r] @ lazy.U[:, : lazy.r].T
    np.testing.assert_allclose(S_true, eager.S, atol=1e-9)
    np.testing.assert_allclose(lazy.mu, eager.mu, atol=1e-9)
    state = lazy.get_state()
    assert lazy.r == 0
    np.testing.assert_allclose(lazy.S, eager.S, atol=1e-9)
    again = make_policy("smooth-ts", 12, d, arms=arms, config={"lazy_rank": 5})
    again.set_state(state)
    x = rng.uniform(0, 4, d)
    assert again.choose(x, key=7).arm == eager.choose(x, key=7).arm


@pytest.mark.parametrize("d", [0, 1, 2, 3])
def test_smooth_ts_refit_is_the_row_by_row_posterior(d: int) -> None:
    """The refit scatters all rows' basis outer products at once: the same precision and
    posterior as adding the rows one by one (contexts beyond the knots included)."""
    from app.policies.splines import spd_inverse

    rng = np.random.default_rng(10 + d)
    arms = np.linspace(1.0, 1.9, 7)[:, None]
    pol = make_policy("smooth-ts", 7, d, arms=arms)
    for t in range(150):
        x = rng.uniform(-1, 1 + t / 50, d)
        pol.update(x, int(rng.integers(7)), float(rng.uniform(5, 50)))
    pol.knots = [k * 0.8 for k in pol.knots]  # some rows now lie outside the knots
    pol._place_knots = lambda: None  # type: ignore[method-assign]
    pol._refit()
    w = 1.0 / pol._sigma2()
    Lam, h = pol.prior.copy(), np.zeros(pol.P)
    for row in pol.buf:  # the reference: one row at a time
        gi, gw = pol._basis(row[:d])
        idx = gi * pol.n_arms + int(row[d])
        Lam[np.ix_(idx, idx)] += w * np.outer(gw, gw)
        h[idx] += w * gw * (row[d + 1] - pol.y0)
    S = spd_inverse(Lam)
    np.testing.assert_allclose(pol.S, S, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pol.mu, S @ (h + pol.prior @ pol.mu0), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_smooth_ts_predictive_is_the_posterior_at_the_context(d: int) -> None:
    """The block-weighted predictive mean and covariance equal B' mu and B' S B for the basis
    row B of the context (pending downdates included)."""
    from app.policies.registry import make_policy

    rng = np.random.default_rng(10 + d)
    arms = np.linspace(1.0, 1.9, 7)[:, None]
    pol = make_policy("smooth-ts", 7, d, arms=arms, config={"lazy_rank": 4})
    for _t in range(70):
        x = rng.uniform(0, 1, d)
        pol.update(x, int(rng.integers(7)), float(rng.uniform(5, 50)))
    assert pol.r > 0
    S = pol.S - pol.U[:, : pol.r] @ pol.U[:, : pol.r].T
    for x in rng.uniform(-0.2, 1.2, (5, d)):
        gi, gw = pol._basis(x)
        B = np.zeros((pol.P, 7))
        for i, w in zip(gi, gw, strict=True):
            B[i * 7 : (i + 1) * 7] += w * np.eye(7)
        mean, cov = pol._predictive(x)
        np.testing.assert_allclose(mean, B.T @ pol.mu + pol.y0, atol=1e-10)
        np.testing.assert_allclose(cov, B.T @ S @ B, atol=1e-10)


def test_default_policy_past_three_features_is_the_wide_default() -> None:
    """``default`` with 4 context features is a policy that takes them (smooth-ts's grid
    stops at 3), on replay and at campaign creation."""
    from app.policies.registry import WIDE_DEFAULT, resolve_name

    assert resolve_name("default", None, 3) == DEFAULT_POLICY
    assert resolve_name("default", None, 4) == WIDE_DEFAULT
    assert resolve_name("default", "constrained-ts", 4) == "constrained-ts"
    pol = make_policy("default", 50, 4, seed=0)
    assert pol.name == WIDE_DEFAULT
    pol.update(np.ones(4), pol.choose(np.ones(4), key=0).arm, 3.0)
    with pytest.raises(ValueError, match="up to 3"):
        make_policy("smooth-ts", 50, 4)


def test_campaign_with_four_features_gets_the_wide_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.client import Client
    from app.config import Settings
    from app.policies.registry import WIDE_DEFAULT

    with Client(settings=Settings(home=tmp_path / "home")) as client:
        camp = client.create_campaign(
            "wide", "noop", {"cost": [1.0, 2.0]}, context_features=["a", "b", "c", "d"]
        )
        assert camp.status()["policy"] == WIDE_DEFAULT


def _drifting_regret(config: dict[str, float], seed: int) -> float:
    """smooth-ts on a drifting 2-feature sequence (each step a context not seen before, the
    optimum moving with the first feature, a costly end arm): total cost / oracle's."""
    K = 30
    arms = np.linspace(1.0, 1.98, K)[:, None]
    rng = np.random.default_rng(seed)
    T = 300
    xs = np.stack(
        [np.linspace(0.4, 0.01, T) * np.exp(rng.normal(0, 0.05, T)), rng.uniform(0.2, 1, T)], 1
    )

    def cost(x: np.ndarray, a: int) -> float:
        w, best = arms[a, 0], 1.3 + 0.25 * (1 - x[0] / 0.4)
        return float((20 / (0.4 + x[0])) * np.exp(3 * abs(w - best))) if w < 1.9 else 900.0

    pol = make_policy("smooth-ts", K, 2, arms=arms, seed=seed, config=config)
    total = oracle = 0.0
    for t in range(T):
        d = pol.choose(xs[t], key=t)
        c = cost(xs[t], d.arm)
        pol.update(xs[t], d.arm, c)
        total += c
        oracle += min(cost(xs[t], a) for a in range(K))
    return total / oracle


def test_smooth_ts_borrows_the_arm_profile_in_new_context_ranges() -> None:
    # Without the profile prior each new context leaves every arm's value open (a linear
    # trend across contexts is free), so the costly end arm keeps being sampled.
    plain = np.mean([_drifting_regret({"shape_slope": 0.0}, s) for s in range(3)])
    default = np.mean([_drifting_regret({}, s) for s in range(3)])
    assert default < 1.3
    assert default < 0.85 * plain


def test_smooth_ts_refits_after_range_growth_are_gated_by_model_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A context drifting past its range at every step: a large model (P = 36 x 50) refits
    at most once per refit_gap results (plus the doubling refits), a small one at each step."""
    from app.policies import smooth_ts

    calls = {"n": 0}
    real = smooth_ts.SmoothTSPolicy._refit

    def counted(self: smooth_ts.SmoothTSPolicy) -> None:
        calls["n"] += 1
        real(self)

    monkeypatch.setattr(smooth_ts.SmoothTSPolicy, "_refit", counted)
    T = 200
    for K, expect_gap in ((50, 29), (5, 1)):
        calls["n"] = 0
        # arm_basis=K: one coefficient per arm, P = 36 x 50 (the reduced basis is smaller)
        cfg = {"arm_basis": K}
        pol = make_policy("smooth-ts", K, 2, arms=np.linspace(1, 1.9, K)[:, None], config=cfg)
        assert isinstance(pol, smooth_ts.SmoothTSPolicy) and pol.refit_gap == expect_gap
        for t in range(T):
            x = np.array([0.01 * t, 1.0 + 0.02 * t])  # a new extreme every step
            pol.update(x, t % K, 10.0 + t % 7)
        doubling = int(np.log2(T / 32)) + 1
        gated_bound = T // 29 + doubling + 1
        if expect_gap > 1:
            assert calls["n"] <= gated_bound
        else:  # every growth past the 10% margin refits
            assert calls["n"] > 2 * gated_bound


def test_smooth_ts_one_feature_grid_grows_and_round_trips() -> None:
    """With one feature the grid starts at 10 knots and grows with the data (refits resize
    it); a restored state has the grown grid and decides exactly as the live policy."""
    tab = synthetic_table(700)
    live = _policy("smooth-ts")
    assert live.G == 10
    _train(live, tab, 600)
    assert 14 <= live.G <= 18 and live.P == live.G * K
    restored = _policy("smooth-ts")
    restored.set_state(json.loads(json.dumps(live.get_state())))
    assert (restored.G, restored.P, restored.S.shape) == (live.G, live.P, live.S.shape)
    for t in range(600, 640):
        x = tab.contexts[t]
        d1, d2 = live.choose(x, t), restored.choose(x, t)
        assert d1 == d2
        live.update(x, d1.arm, float(tab.costs[t, d1.arm]))
        restored.update(x, d2.arm, float(tab.costs[t, d2.arm]))
    fixed = make_policy("smooth-ts", K, 1, arms=ARMS[:, None], seed=3, config={"knots": 10})
    _train(fixed, tab, 600)
    assert fixed.G == 10  # knots given: the grid stays as asked


def test_smooth_ts_many_ordered_arms_share_a_spline_basis() -> None:
    """50 ordered arms: each context point's arm curve is 13 cubic B-spline coefficients
    (P = 36 x 13, not 36 x 50); an optimum between the basis knots stays reachable (a
    quadratic log cost is in the spline space, so the learnt argmin is exact), the state is
    several times smaller and learning on a drifting sequence is no worse."""
    K = 50
    arms = np.linspace(1.0, 1.98, K)[:, None]
    pol = make_policy("smooth-ts", K, 2, arms=arms, seed=0)
    assert isinstance(pol, SmoothTSPolicy) and (pol.M, pol.P) == (13, 36 * 13)
    full = make_policy("smooth-ts", K, 2, arms=arms, seed=0, config={"arm_basis": K})
    assert isinstance(full, SmoothTSPolicy) and full.P == 36 * K
    rng = np.random.default_rng(0)
    best = 23  # between knots (at 19.6 and 24.5 in arm index)
    for t in range(400):
        x = rng.uniform(0.0, 1.0, 2)
        for p in (pol, full):
            a = p.choose(x, key=t).arm
            p.update(x, a, float(np.exp(2.0 + x[0] + 0.01 * (a - best) ** 2)))
    for x in ([0.2, 0.3], [0.5, 0.5], [0.9, 0.1]):
        assert pol.best_arm(np.array(x)) == best
    assert len(json.dumps(pol.get_state())) * 4 < len(json.dumps(full.get_state()))
    reduced = np.mean([_drifting_regret({}, s) for s in range(3)])
    one_per_arm = np.mean([_drifting_regret({"arm_basis": 30}, s) for s in range(3)])
    assert reduced < 1.3 and reduced < 1.05 * one_per_arm


def test_smooth_ts_arm_basis_needs_ordered_arms() -> None:
    unordered = np.array([[1.5], [1.0], [1.9], [1.2]] * 10)
    with pytest.raises(ValueError, match="arm_basis"):
        make_policy("smooth-ts", 40, 1, arms=unordered, config={"arm_basis": 8})
    pol = make_policy("smooth-ts", 40, 1, arms=unordered)
    assert isinstance(pol, SmoothTSPolicy) and pol.M == 40  # auto: one value per arm


@pytest.mark.parametrize("K", [1, 2, 3, 5])
def test_smooth_ts_few_arms_keep_one_value_each(K: int) -> None:
    pol = make_policy("smooth-ts", K, 1, arms=np.linspace(1, 1.9, K)[:, None])
    assert isinstance(pol, SmoothTSPolicy) and pol.M == K
    pol.update(np.ones(1), pol.choose(np.ones(1), key=0).arm, 3.0)
    with pytest.raises(ValueError, match="arm_basis"):
        make_policy(
            "smooth-ts", 40, 1, arms=np.linspace(1, 1.9, 40)[:, None], config={"arm_basis": 3}
        )


@pytest.mark.parametrize("K", [12, 30])  # one value per arm; a spline basis
def test_smooth_ts_treats_arms_listed_out_of_order_as_the_same_continuum(K: int) -> None:
    """Omegas listed out of order are still ordered points: the policy learns exactly as on
    the sorted list (before, it fell back to unrelated arms and lost the curve)."""
    from app.policies.smooth_ts import SmoothTSPolicy

    omegas = np.linspace(1.0, 1.95, K)
    perm = np.random.default_rng(3).permutation(K)
    sorted_p = SmoothTSPolicy(K, 1, arms=omegas[:, None], seed=1)
    shuffled = SmoothTSPolicy(K, 1, arms=omegas[perm][:, None], seed=1)
    assert shuffled.ordered and sorted_p.ordered and not shuffled.basis.plain
    where = np.argsort(perm)  # sorted arm j is listed at position where[j]
    rng = np.random.default_rng(0)
    for _t in range(120):
        x = np.array([rng.uniform(0, 1)])
        j = int(rng.integers(K))
        cost = 10.0 * (1.0 + (omegas[j] - 1.5 - 0.2 * x[0]) ** 2)
        sorted_p.update(x, j, cost)
        shuffled.update(x, int(where[j]), cost)
    x = np.array([0.4])
    assert int(perm[shuffled.best_arm(x)]) == sorted_p.best_arm(x)
    # the same choice distribution, arm for arm (the draw itself walks the listed order)
    p1, p2 = sorted_p.probabilities(x, key=7), shuffled.probabilities(x, key=7)
    np.testing.assert_allclose(p2[where], p1)


def test_smooth_ts_does_not_smooth_over_arms_that_are_not_numbers() -> None:
    from app.policies.registry import make_policy

    configs = make_policy("smooth-ts", 9, 1, arms=None)  # e.g. solver configurations
    assert not configs.ordered  # type: ignore[attr-defined]
    numbers = make_policy("smooth-ts", 9, 1, arms=np.linspace(1, 2, 9)[:, None])
    assert numbers.ordered  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_choose_many_makes_the_choices_of_one_call_each(name: str) -> None:
    """The scheduler decides a burst with ``choose_many``: exactly the decisions (arm,
    propensity, reason) that ``choose`` makes row by row with the same keys."""
    tab = synthetic_table(140)
    pol = _policy(name)
    _train(pol, tab, 70)
    X, keys = tab.contexts[70:134], list(range(500, 564))
    assert pol.choose_many(X, keys) == [pol.choose(x, k) for x, k in zip(X, keys, strict=True)]


@pytest.mark.parametrize(
    ("d", "K", "config"),
    [(0, 8, {}), (1, 8, {"lazy_rank": 6}), (2, 8, {"lazy_rank": 0}), (2, 40, {}), (1, 8, {})],
)
def test_smooth_ts_vectorized_choices_equal_the_single_ones(
    d: int, K: int, config: dict[str, int]
) -> None:
    """Vectorized over the burst (no context, one and two features, pending low-rank
    downdates or none, a spline arm basis for many arms, contexts outside the grid): the
    same draws from each key's generator, so the same decisions."""
    rng = np.random.default_rng(d + K)
    pol = make_policy("smooth-ts", K, d, arms=np.linspace(1.0, 1.9, K)[:, None], config=config)
    assert isinstance(pol, SmoothTSPolicy)
    for t in range(90):
        x = rng.uniform(0.0, 1.0, d)
        a = pol.choose(x, key=t).arm
        pol.update(x, a, float(np.exp(1.0 + (a / K - 0.3 - 0.4 * x.sum() / max(d, 1)) ** 2)))
    X = rng.uniform(-0.5, 1.5, (48, d))  # a third past the range the grid has seen
    keys = [int(k) for k in rng.integers(0, 2**31, 48)]
    many = pol.choose_many(X, keys)
    assert many == [pol.choose(x, k) for x, k in zip(X, keys, strict=True)]
    assert len({m.arm for m in many}) > 1  # the burst is not one repeated choice
