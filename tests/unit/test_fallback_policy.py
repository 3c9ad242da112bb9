"""policy_config.fallback: a budget per decision from the fallback arm's expected cost, and
censored observations ("at least this much") learnt as the log-cost model says."""

from __future__ import annotations

import numpy as np
import pytest

from app.policies.base import Decision
from app.policies.fallback import FallbackBudget
from app.policies.registry import make_policy
from app.scheduler.choosing import checked
from app.scheduler.runtime import apply_result
from tasks.errors import InputError


def _policy(seed: int = 0, factor: float = 3.0) -> FallbackBudget:
    p = make_policy(
        "smooth-ts",
        4,
        1,
        arms=np.array([[1.0], [1.3], [1.6], [1.9]]),
        seed=seed,
        config={"fallback": {"arm": 0, "budget": factor}},
    )
    assert isinstance(p, FallbackBudget)
    return p


def test_the_fallback_is_played_first_then_every_other_arm_has_a_budget() -> None:
    p = _policy()
    x = np.array([0.5])
    d = p.choose(x, 0)
    assert (d.arm, d.reason, d.budget) == (0, "fallback:first", None)
    for _ in range(5):
        p.update(x, 0, 40.0)
    budgets = []
    for key in range(1, 60):
        d = p.choose(x, key)
        checked(d, 4, None)  # what the scheduler accepts
        if d.arm == 0:
            assert d.budget is None  # the safe arm itself is never cut short
        else:
            budgets.append(d.budget)
    assert budgets, "the inner policy explores other arms"
    assert all(b == pytest.approx(3.0 * 40.0, rel=0.05) for b in budgets)


def test_a_censored_cost_is_learnt_beyond_its_bound() -> None:
    p = _policy()
    x = np.array([0.5])
    for c in (40.0, 44.0, 37.0, 41.0):
        p.update(x, 0, c)
    # An unseen arm stopped at 120: the imputed cost lies beyond the bound.
    imputed = p.impute(x, 2, 120.0)
    assert imputed > 120.0
    # An arm known to cost ~1000, stopped at 120: the model's own mean, not the bound.
    for _ in range(6):
        p.update(x, 3, 1000.0)
    assert p.impute(x, 3, 120.0) == pytest.approx(1000.0, rel=0.15)
    n = p.n_updates
    p.update_censored(x, 2, 120.0)
    assert p.n_updates == n + 1
    assert p.expected_cost(x, 2) is not None and p.expected_cost(x, 2) > 120.0


def test_censored_results_replay_to_the_same_state() -> None:
    """A restart replays applied results with their censored flag: the same state."""
    rng = np.random.default_rng(3)
    live, fresh = _policy(5), _policy(5)
    log = []
    for t in range(80):
        x = np.array([rng.random()])
        d = live.choose(x, t)
        cost = float(20 + 60 * abs(d.arm - 1.5 * x[0]) * rng.lognormal(0, 0.3))
        censored = d.budget is not None and cost >= d.budget
        if censored:
            cost = float(d.budget)
        apply_result(live, x, d.arm, cost, None, censored)
        log.append((x, d.arm, cost, censored))
    assert any(c for *_, c in log), "some trials were stopped at their budget"
    for x, arm, cost, censored in log:
        apply_result(fresh, x, arm, cost, None, censored)
    s1, s2 = live.get_state(), fresh.get_state()
    assert s1 == s2
    restored = _policy(5)
    restored.set_state(s1)
    for t in range(80, 90):
        x = np.array([0.3])
        assert restored.choose(x, t) == live.choose(x, t)


def test_bad_fallback_configs_are_refused() -> None:
    for cfg, match in (
        ({"arm": 9, "budget": 3.0}, "fallback.arm"),
        ({"arm": 0, "budget": 0.5}, "fallback.budget"),
        ({"arm": 0}, "fallback must be"),
        ({"arm": True, "budget": 2.0}, "fallback.arm"),
    ):
        with pytest.raises(ValueError, match=match):
            make_policy("smooth-ts", 4, 1, config={"fallback": cfg})


def test_checked_refuses_a_bad_budget() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="budget"):
            checked(Decision(0, 1.0, "policy", budget=bad), 2, None)  # type: ignore[arg-type]


def _levelled(prior: bool, seed: int = 0) -> FallbackBudget:
    """shared-ts over four configurations (the first the fallback), with a level: the
    fallback's expected log cost in products, offset 5 at log_n 4, slope 1 per decade."""
    arms = [{"method": "cg", "preconditioner": p} for p in ("amg-sa", "jacobi", "ssor", "none")]
    config: dict[str, object] = {
        "fallback": {
            "arm": 0,
            "budget": 2.0,
            "level": {"offset": 5.0, "slope": [1.0], "center": [4.0]},
        }
    }
    if prior:  # the fallback slow, ssor fastest, with small spreads
        config["prior"] = {"offset": [0.0, -0.5, -1.5, 1.0], "sd": [0.2] * 4}
    p = make_policy("shared-ts", 4, 1, seed=seed, config=config, arm_values=arms)
    assert isinstance(p, FallbackBudget)
    return p


def test_with_a_level_the_first_decision_is_the_policys_budgeted_in_products() -> None:
    """Before any result the fallback's cost is unknown, but its level says how many
    products of the matrix it takes: the policy chooses, budgeted at ``budget`` x that."""
    p = _levelled(prior=True)
    x = np.array([5.0])  # a decade above the level's centre: e^(5 + 1) products
    d = checked(p.choose(x, 0), 4, None)
    assert d.arm == 2 and d.reason != "fallback:first"  # the prior's fastest
    assert d.budget_unit == "matvec" and d.budget == pytest.approx(2.0 * np.exp(6.0))
    assert p.probabilities(x, 0)[0] < 1.0  # not the fallback for certain
    # another configuration's result: the fallback is still priced by its level, not by
    # the prior's ratio to that configuration on this system
    p.update(x, 2, 0.05)
    d = p.choose(x, 1)
    assert d.arm != 0
    assert d.budget_unit == "matvec" and d.budget == pytest.approx(2.0 * np.exp(6.0))
    # the fallback's own result: from then on a budget in seconds, from the model
    p.update(x, 0, 0.2)
    d = p.choose(x, 2)
    assert d.arm != 0 and d.budget_unit is None and d.budget is not None
    assert d.budget == pytest.approx(2.0 * 0.2, rel=0.3)


def test_a_level_without_a_prior_budgets_in_products_until_the_fallback_is_seen() -> None:
    p = _levelled(prior=False)
    x = np.array([4.0])
    budgets = []
    for key in range(6):
        d = p.choose(x, key)
        if d.arm != 0:
            budgets.append((d.budget, d.budget_unit))
            p.update(x, d.arm, 1.0 + d.arm)
    assert budgets and all(b == (pytest.approx(2.0 * np.exp(5.0)), "matvec") for b in budgets)
    p.update(x, 0, 3.0)  # the fallback seen: its own estimate, in the cost's unit
    later = [p.choose(x, k) for k in range(10, 20)]
    assert all(d.budget_unit is None for d in later if d.arm != 0)


def test_without_a_level_the_fallback_still_comes_first() -> None:
    d = _policy().choose(np.array([0.5]), 0)
    assert (d.arm, d.reason, d.budget, d.budget_unit) == (0, "fallback:first", None, None)


@pytest.mark.parametrize(
    ("level", "field"),
    [
        (3.0, "policy_config.fallback.level"),
        ({"offset": -1.0}, "policy_config.fallback.level.offset"),
        ({"offset": 5.0, "slope": [1.0, 2.0]}, "policy_config.fallback.level.slope"),
        ({"offset": 5.0, "center": ["x"]}, "policy_config.fallback.level.center"),
        ({"offset": 5.0, "scale": 1}, "policy_config.fallback.level"),
    ],
)
def test_a_bad_level_is_refused_naming_the_field(level: object, field: str) -> None:
    with pytest.raises(InputError) as err:
        make_policy(
            "smooth-ts", 4, 1, config={"fallback": {"arm": 0, "budget": 2.0, "level": level}}
        )
    assert err.value.field == field


def test_checked_refuses_a_bad_budget_unit() -> None:
    with pytest.raises(ValueError, match="budget_unit"):
        checked(Decision(1, 1.0, "policy", budget=3.0, budget_unit="seconds"), 2, None)
    with pytest.raises(ValueError, match="budget_unit"):
        checked(Decision(1, 1.0, "policy", budget_unit="matvec"), 2, None)
    d = checked(Decision(1, 1.0, "policy", budget=3.0, budget_unit="matvec"), 2, None)
    assert d.budget_unit == "matvec"
