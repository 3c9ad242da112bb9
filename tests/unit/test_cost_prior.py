"""shared-ts with a prior from history (app/policies/cost_prior.py) and the krylov kind's
history prior (tasks/kinds/krylov_prior.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from app.policies.fallback import FallbackBudget
from app.policies.registry import make_policy
from app.policies.shared_kg import SharedKGPolicy
from app.policies.shared_ts import SharedTSPolicy
from tasks.kinds.krylov import DEFAULT_FEATURES, DEFAULT_SPD, KrylovKind, safe_arm
from tasks.kinds.krylov_prior import arm_label, history_prior, load_history


def _grouped() -> list[dict[str, object]]:
    return [{"pre": "none", "k": i} for i in range(6)] + [{"pre": "amg", "k": i} for i in range(6)]


def _prior(best: int, K: int = 12, d: int = 1) -> dict[str, Any]:
    offset = [0.0] * K
    offset[best] = -1.5  # the history: arm ``best`` ~4.5x cheaper than the rest
    return {"offset": offset, "sd": [0.3] * K, "slope": [[0.0] * d] * K, "center": [0.0] * d}


def test_a_prior_steers_the_first_choices_and_sets_its_level_from_the_first_result() -> None:
    with_prior = make_policy(
        "shared-ts", 12, 1, arm_values=_grouped(), seed=1, config={"prior": _prior(9)}
    )
    without = make_policy("shared-ts", 12, 1, arm_values=_grouped(), seed=1)
    x = np.array([0.2])
    for pol in (with_prior, without):
        pol.update(x, 6, 2.0)  # the first result: arm 6 at 2 s
    assert isinstance(with_prior, SharedTSPolicy)
    mean, _cov = with_prior._predictive(x[None])
    # arm 9 is expected 1.5 below arm 6's observed level, the others at it
    assert mean[0, 9] == pytest.approx(math.log(2.0 + 2e-3) - 1.5, abs=0.05)
    assert mean[0, 6] == pytest.approx(math.log(2.0 + 2e-3), abs=0.05)
    assert with_prior.probabilities(x, 5)[9] > 0.5
    assert without.probabilities(x, 5)[9] < 0.3


def test_with_a_prior_the_running_fit_equals_a_refit_and_state_round_trips() -> None:
    rng = np.random.default_rng(2)
    prior = {**_prior(3, d=2), "slope": [[0.2, -0.1]] * 12, "center": [1.0, 2.0]}
    pol = make_policy("shared-ts", 12, 2, arm_values=_grouped(), seed=3, config={"prior": prior})
    assert isinstance(pol, SharedTSPolicy)
    pol.update(np.array([0.0, 0.0]), 1, 1.0)
    pol.update(np.array([5.0, 5.0]), 2, 1.0)  # the context range is set: no refit below
    for _t in range(30):
        x = rng.uniform(0, 5, 2)
        pol.update(x, int(rng.integers(12)), float(rng.lognormal(0, 1)))
    S, r, yy = pol.S.copy(), pol.r.copy(), pol.yy
    pol._refit()
    assert np.allclose(pol.S, S) and np.allclose(pol.r, r) and pol.yy == pytest.approx(yy)
    copy = make_policy("shared-ts", 12, 2, arm_values=_grouped(), seed=3, config={"prior": prior})
    copy.set_state(pol.get_state())
    X = rng.uniform(0, 5, (6, 2))
    assert copy.choose_many(X, list(range(6))) == pol.choose_many(X, list(range(6)))


@pytest.mark.parametrize(
    ("prior", "field"),
    [
        ({"offset": [0.0] * 3, "sd": [0.5] * 2}, "prior.sd"),
        ({"offset": [0.0] * 3, "sd": [0.0] * 3}, "prior.sd"),
        ({"offset": ["a"] * 3, "sd": [0.5] * 3}, "prior.offset"),
        ({"offset": [0.0] * 3, "sd": [0.5] * 3, "slope": [[1.0]] * 2}, "prior.slope"),
        ({"offset": [0.0] * 3}, "policy_config.prior"),
        ({"offset": [0.0] * 3, "sd": [0.5] * 3, "mean": 1}, "policy_config.prior"),
    ],
)
def test_a_malformed_prior_names_its_field(prior: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make_policy("shared-ts", 3, 1, config={"prior": prior})


def _history() -> dict[str, Any]:
    """Three families measured against arm "s"; "a" is 1.0 below it at 10^4 in family f1,
    0.5 in f2, 1.5 in f3, and 0.4 higher per decade everywhere."""
    fams = {}
    for name, a in (("f1", -1.0), ("f2", -0.5), ("f3", -1.5)):
        fams[name] = {
            "reference": "m=s",
            "log_n": [3.0, 5.0],
            "arms": {"m=s": [0.0, 0.0], "m=a": [a - 0.4, a + 0.4], "m=b": [1.0, 1.0]},
        }
    return {"families": fams}


def test_the_history_prior_is_each_arms_mean_and_spread_across_families() -> None:
    arms = [{"m": "s"}, {"m": "a"}, {"m": "b"}, {"m": "new"}]
    p = history_prior(arms, ["c", "log_n"], 0, history=_history())
    assert p is not None
    assert p["offset"][:3] == pytest.approx([0.0, -1.0, 1.0])
    assert p["center"] == [0.0, 4.0]
    assert p["slope"][1] == pytest.approx([0.0, 0.4]) and p["slope"][2] == pytest.approx([0, 0])
    spread = math.sqrt(np.var([-1.0, -0.5, -1.5], ddof=1) * (1 + 1 / 3))
    # only "a" moves between families: one factor carries its whole spread, and leaving
    # a family out, the others' direction explains it: its own spread is the floor
    F = np.asarray(p["factors"])
    assert F.shape == (4, 1)
    assert abs(F[1, 0]) == pytest.approx(spread) and F[[0, 2, 3], 0] == pytest.approx([0, 0, 0])
    assert p["sd"][:3] == pytest.approx([0.1, 0.1, 0.1])  # no spread left: the floor
    assert p["offset"][3] == 0.0 and p["sd"][3] == pytest.approx(spread)  # unknown: widest
    # relative to the campaign's fallback, whichever it is
    q = history_prior(arms, ["log_n"], 1, history=_history())
    assert q is not None and q["offset"][:3] == pytest.approx([1.0, 0.0, 2.0])
    # a family left out (the benchmark's held-out column); fewer than two: no prior
    r = history_prior(arms, ["log_n"], 0, exclude=["f3"], history=_history())
    assert r is not None and r["offset"][1] == pytest.approx(-0.75)
    # two families are too few to tell a direction from a family's own quirks: no factors,
    # each arm's spread across them
    assert "factors" not in r
    assert r["sd"][1] == pytest.approx(math.sqrt(np.var([-1.0, -0.5], ddof=1) * 1.5))
    assert history_prior(arms, ["log_n"], 0, exclude=["f2", "f3"], history=_history()) is None
    assert history_prior(arms, ["log_n"], 3, history=_history()) is None  # fallback unmeasured


def _moving_history() -> dict[str, Any]:
    """Five families against arm "s": "a1" and "a2" (two settings of one method) are slow
    or fast together, "b" varies on its own."""
    fams = {}
    moves = [(-1.0, 0.3), (0.5, 0.4), (0.0, -0.5), (1.2, 0.1), (-0.7, 0.3)]
    for i, (m, own) in enumerate(moves):
        fams[f"f{i}"] = {
            "reference": "m=s",
            "log_n": [4.0],
            "arms": {"m=s": [0.0], "m=a1": [m], "m=a2": [m + 0.1], "m=b": [own]},
        }
    return {"families": fams}


def test_arms_that_moved_together_in_the_history_share_a_factor() -> None:
    arms = [{"m": "s"}, {"m": "a1"}, {"m": "a2"}, {"m": "b"}]
    p = history_prior(arms, ["log_n"], 0, history=_moving_history())
    assert p is not None
    F = np.asarray(p["factors"])
    cov = F @ F.T + np.diag(np.square(p["sd"]))
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert corr[1, 2] > 0.95  # a1 and a2 move as one
    assert abs(corr[1, 3]) < 0.6  # b is not tied to them
    # between families the prior's variance is at least the history's spread
    m = np.array([-1.0, 0.5, 0.0, 1.2, -0.7])
    assert cov[1, 1] >= np.var(m, ddof=1) * (1 + 1 / 5) - 1e-9
    # in the model: a1 found slow moves a2 with it, and b much less
    pol = make_policy(
        "shared-ts", 4, 1, arm_values=[{"k": i} for i in range(4)], config={"prior": p}
    )
    assert isinstance(pol, SharedTSPolicy)
    x = np.array([0.0])
    pol.update(x, 0, 1.0)  # the level: arm s at 1 s
    before = pol._predictive(x[None])[0][0]
    pol.update(x, 1, 8.0)  # a1 at 8 s: ~2 above its prior mean
    after = pol._predictive(x[None])[0][0]
    moved = after - before
    assert moved[2] > 0.8 * moved[1] > 0.5 and abs(moved[3]) < 0.5 * moved[2]


def test_malformed_prior_factors_name_their_field() -> None:
    base = {"offset": [0.0] * 3, "sd": [0.5] * 3}
    for bad in ([[1.0]] * 2, [[1.0, "x"]] * 3, [[99.0]] * 3, [[0.0] * 17] * 3, 5):
        with pytest.raises(ValueError, match="prior.factors"):
            make_policy("shared-ts", 3, 1, config={"prior": {**base, "factors": bad}})


def test_a_krylov_campaign_gets_the_shipped_history_as_its_prior() -> None:
    kind = KrylovKind()
    features = list(DEFAULT_FEATURES)
    config = kind.prepare_campaign(DEFAULT_SPD, {}, "shared-ts", {}, features)[2]
    prior = config["prior"]
    assert len(prior["offset"]) == len(DEFAULT_SPD)
    assert prior["offset"][config["fallback"]["arm"]] == 0.0
    # every default configuration is in the history: none gets the unknown arms' default
    held = load_history()["families"]
    labels = {lab for fam in held.values() for lab in fam["arms"]}
    assert {arm_label(a) for a in DEFAULT_SPD} <= labels
    pol = make_policy("shared-ts", len(DEFAULT_SPD), len(features), config=config)
    inner = getattr(pol, "inner", None)  # under the fallback's budget
    assert isinstance(inner, SharedTSPolicy) and inner.cost_prior is not None
    # opting out, another policy, a fallback of one's own
    assert (
        kind.prepare_campaign(DEFAULT_SPD, {}, "shared-ts", {"prior": None}, features)[2]["prior"]
        is None
    )
    assert "prior" not in kind.prepare_campaign(DEFAULT_SPD, {}, "lin-ts", {}, features)[2]
    own = {"fallback": {"arm": 0, "budget": 3.0}}
    mine = kind.prepare_campaign(DEFAULT_SPD, {}, "shared-ts", own, features)[2]
    assert mine["prior"]["offset"][0] == 0.0
    assert safe_arm(DEFAULT_SPD) != 0
    # the kind's default policy takes it too, and is told the budget's stop rule
    assert KrylovKind.default_policy == "shared-kg"
    kg = kind.prepare_campaign(DEFAULT_SPD, {}, "shared-kg", {}, features)[2]
    assert kg["prior"] == prior
    wrapped = make_policy("shared-kg", len(DEFAULT_SPD), len(features), config=kg)
    assert isinstance(wrapped, FallbackBudget)
    inner = wrapped.inner
    assert isinstance(inner, SharedKGPolicy) and inner.cost_prior is not None
    assert inner.stop == (kg["fallback"]["arm"], kg["fallback"]["budget"])


def test_a_budget_follows_the_shared_model_where_the_fallback_was_not_played() -> None:
    """The fallback (arm 6) is played once, at context 0; its neighbour arm 7 shows that
    context 1 costs 5x as much. The budget at context 1 follows (the fallback's own model,
    one result at context 0, would say 1 s there as well)."""
    pol = make_policy(
        "shared-ts",
        12,
        1,
        arm_values=_grouped(),
        seed=1,
        config={"fallback": {"arm": 6, "budget": 2.0}},
    )
    rng = np.random.default_rng(4)
    pol.update(np.array([0.0]), 6, 1.0)
    for _t in range(30):
        pol.update(np.array([0.0]), 7, float(rng.lognormal(0, 0.05)))
        pol.update(np.array([1.0]), 7, 5.0 * float(rng.lognormal(0, 0.05)))
    assert isinstance(pol, FallbackBudget)
    assert pol.budget_at(np.array([0.0])) == pytest.approx(2.0, rel=0.25)
    assert pol.budget_at(np.array([1.0])) == pytest.approx(10.0, rel=0.35)


def _levelled_prior(K: int = 12, products: float = 100.0) -> dict[str, Any]:
    # the arms relative to arm 6, whose own cost the level states: ``products`` per solve
    level = {"offset": math.log(products), "sd": 0.3, "slope": [0.0], "center": [0.0]}
    return {**_prior(9, K), "level": level}


def test_a_prior_with_a_level_prices_every_arm_before_any_result() -> None:
    """Costs in an absolute unit (products): the level says what arm 6 costs, so estimates
    exist from the first decision; one result moves every arm's level (one shared term)
    and its own arm's estimate further."""
    pol = make_policy(
        "shared-ts", 12, 1, arm_values=_grouped(), seed=1, config={"prior": _levelled_prior()}
    )
    assert isinstance(pol, SharedTSPolicy)
    x = np.array([0.0])
    assert pol.estimated_cost(x, 6) == pytest.approx(100.0, rel=1e-6)
    assert pol.estimated_cost(x, 9) == pytest.approx(100.0 * math.exp(-1.5), rel=1e-6)
    assert pol.probabilities(x, 0)[9] > 0.5  # the prior's cheapest, before any result
    before = [pol.estimated_cost(x, a) for a in range(12)]
    pol.update(x, 0, 400.0)  # arm 0 at 4x the level
    after = [pol.estimated_cost(x, a) for a in range(12)]
    ratio = [a / b for a, b in zip(after, before, strict=True)]  # type: ignore[operator]
    assert all(r > 1.05 for r in ratio)  # the level rose for every arm
    assert ratio[0] > ratio[1] > ratio[6] > 1.0  # its own arm most, its group's more
    assert pol.y0 == 0.0  # the level stayed the prior's: the first result did not set it
    # the running fit equals a refit, and the state round-trips
    S, r = pol.S.copy(), pol.r.copy()
    pol._refit()
    assert np.allclose(pol.S, S) and np.allclose(pol.r, r)
    copy = make_policy(
        "shared-ts", 12, 1, arm_values=_grouped(), seed=1, config={"prior": _levelled_prior()}
    )
    copy.set_state(pol.get_state())
    assert copy.estimated_cost(x, 3) == pytest.approx(pol.estimated_cost(x, 3))


@pytest.mark.parametrize(
    ("level", "field"),
    [
        ({"offset": 1.0}, "prior.level"),
        ({"offset": 1.0, "sd": 0.0}, "prior.level.sd"),
        ({"offset": "a", "sd": 0.3}, "prior.level.offset"),
        ({"offset": 1.0, "sd": 0.3, "slope": [1.0, 2.0]}, "prior.level.slope"),
        ({"offset": 1.0, "sd": 0.3, "scale": 2.0}, "prior.level"),
    ],
)
def test_a_malformed_level_names_its_field(level: dict[str, Any], field: str) -> None:
    prior = {"offset": [0.0] * 3, "sd": [0.5] * 3, "level": level}
    with pytest.raises(ValueError, match=field):
        make_policy("shared-ts", 3, 1, config={"prior": prior})


def test_a_krylov_campaign_timed_in_seconds_learns_in_products_from_the_level() -> None:
    kind = KrylovKind()
    features = list(DEFAULT_FEATURES)
    config = kind.prepare_campaign(DEFAULT_SPD, {}, "shared-kg", {}, features)[2]
    assert config["cost_unit"] == "matvec"
    level, fb_level = config["prior"]["level"], config["fallback"]["level"]
    # one level for the model and the budget: the fallback's products from the history
    assert level["offset"] == fb_level["offset"] > 0.0 and level["slope"] == fb_level["slope"]
    assert 0.1 <= level["sd"] < 1.0  # the spread of the families' levels
    pol = make_policy(
        "shared-kg", len(DEFAULT_SPD), len(features), config=config, arm_values=DEFAULT_SPD
    )
    assert isinstance(pol, FallbackBudget) and pol.unit == "matvec"
    x = np.array([5.0, 3.0, 0.5, 5.0, 0.0])
    fb = config["fallback"]["arm"]
    assert pol.inner.estimated_cost(x, fb) == pytest.approx(pol.level.products(x))  # type: ignore[union-attr]
    # by work (products counted already): no level; opting out of the unit: seconds, the
    # level for the first budgets only
    by_work = {"kind_options": {"cost": "work"}}
    cfg = kind.prepare_campaign(DEFAULT_SPD, by_work, "shared-kg", {}, features)[2]
    assert cfg.get("cost_unit") is None and "level" not in cfg["prior"]
    assert "level" not in cfg["fallback"]
    cfg = kind.prepare_campaign(DEFAULT_SPD, {}, "shared-kg", {"cost_unit": None}, features)[2]
    assert cfg["cost_unit"] is None and "level" not in cfg["prior"]
    assert cfg["fallback"]["level"] == fb_level
    assert kind.cost_units(by_work) == () and kind.cost_units({}) == ("matvec",)


def test_a_krylov_result_in_products_is_its_time_over_one_products() -> None:
    kind = KrylovKind()
    assert kind.policy_cost(0.5, {"matvec_ms": 0.25}, "matvec") == pytest.approx(2000.0)
    for metrics in ({}, {"matvec_ms": 0.0}, {"matvec_ms": "1"}, {"matvec_ms": float("nan")}):
        with pytest.raises(ValueError, match="matvec_ms"):
            kind.policy_cost(0.5, metrics, "matvec")


def test_budgets_are_in_products_when_the_policy_learns_products() -> None:
    config = {"fallback": {"arm": 6, "budget": 2.0}, "cost_unit": "matvec"}
    pol = make_policy("shared-ts", 12, 1, arm_values=_grouped(), seed=1, config=config)
    x = np.array([0.0])
    assert pol.choose(x, 0).reason == "fallback:first"  # no level: it solves first
    pol.update(x, 6, 300.0)  # 300 products
    others = [d for d in (pol.choose(x, k) for k in range(1, 30)) if d.arm != 6]
    assert others and all(
        d.budget_unit == "matvec" and d.budget == pytest.approx(600.0) for d in others
    )
    with pytest.raises(ValueError, match="cost_unit"):
        make_policy("shared-ts", 12, 1, arm_values=_grouped(), config={"cost_unit": "flops"})


def test_an_arm_set_one_family_measured_gets_its_ratios_and_a_typical_spread() -> None:
    """The non-symmetric grid: only convdiff measured it. Its prior is convdiff's ratios to
    the fallback, each with the spread configurations showed across the other families."""
    from tasks.kinds.krylov import DEFAULT_NONSYMMETRIC
    from tasks.kinds.krylov_prior import typical_spread

    hist = load_history()
    fb = safe_arm(DEFAULT_NONSYMMETRIC)
    assert fb is not None
    features = list(DEFAULT_FEATURES)
    prior = history_prior(DEFAULT_NONSYMMETRIC, features, fb)
    assert prior is not None and "factors" not in prior
    spread = typical_spread(hist)
    assert spread is not None and 0.1 < spread < 2.0
    assert prior["sd"] == [pytest.approx(spread)] * len(DEFAULT_NONSYMMETRIC)
    fam = hist["families"]["convdiff"]
    ref = fam["arms"][arm_label(DEFAULT_NONSYMMETRIC[fb])]
    for i, arm in enumerate(DEFAULT_NONSYMMETRIC):  # its mean ratio over the sizes held
        got = np.mean(np.asarray(fam["arms"][arm_label(arm)]) - np.asarray(ref))
        assert prior["offset"][i] == pytest.approx(got, abs=0.1)
    # the family left out: nothing measured the grid
    assert history_prior(DEFAULT_NONSYMMETRIC, features, fb, exclude=["convdiff"]) is None
    # a history of that family alone: no other family's spread to borrow, no prior
    two = {"families": {k: hist["families"][k] for k in ("convdiff",)}}
    assert (
        typical_spread(two) is None
        and history_prior(DEFAULT_NONSYMMETRIC, features, fb, history=two) is None
    )
