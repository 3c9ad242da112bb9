"""Replay tables, off-policy evaluation, the conservative guard, warm start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.client import Client
from app.config import Settings
from app.offline.ope import LoggedRound, evaluate
from app.offline.replay import replay, replay_once
from app.offline.tables import CostTable, load_table
from app.policies.registry import make_policy
from models import PolicySnapshot
from tasks.errors import InputError
from tasks.linsys import LinearSystem
from tests.inline import InlineScheduler
from tests.unit.test_policies import ARMS, K, synthetic_table


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


BAD_TABLES = [
    ("missing costs", {"contexts": np.zeros((3, 1)), "arms": np.arange(2.0)}, "costs"),
    ("missing contexts", {"costs": np.ones((3, 2)), "arms": np.arange(2.0)}, "contexts"),
    (
        "row mismatch",
        {"contexts": np.zeros((4, 1)), "arms": np.arange(2.0), "costs": np.ones((3, 2))},
        "contexts",
    ),
    (
        "arm mismatch",
        {"contexts": np.zeros((3, 1)), "arms": np.arange(3.0), "costs": np.ones((3, 2))},
        "arms",
    ),
    (
        "nan cost",
        {
            "contexts": np.zeros((2, 1)),
            "arms": np.arange(2.0),
            "costs": np.array([[1.0, np.nan], [1, 1]]),
        },
        "costs",
    ),
    (
        "negative cost",
        {
            "contexts": np.zeros((2, 1)),
            "arms": np.arange(2.0),
            "costs": np.array([[1.0, -1], [1, 1]]),
        },
        "costs",
    ),
    (
        "inf context",
        {"contexts": np.array([[np.inf], [0]]), "arms": np.arange(2.0), "costs": np.ones((2, 2))},
        "contexts",
    ),
    (
        "string costs",
        {"contexts": np.zeros((1, 1)), "arms": np.arange(2.0), "costs": np.array([["a", "b"]])},
        "costs",
    ),
    (
        "3-D contexts",
        {"contexts": np.zeros((2, 1, 1)), "arms": np.arange(2.0), "costs": np.ones((2, 2))},
        "contexts",
    ),
    (
        "empty costs",
        {"contexts": np.zeros((0, 1)), "arms": np.arange(2.0), "costs": np.ones((0, 2))},
        "costs",
    ),
    (
        "bad names",
        {
            "contexts": np.zeros((2, 1)),
            "arms": np.arange(2.0),
            "costs": np.ones((2, 2)),
            "arm_names": np.array(["a"]),
        },
        "arm_names",
    ),
]


@pytest.mark.parametrize(("label", "arrays", "field"), BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_tables_name_the_array(tmp_path: Path, label: str, arrays: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as info:
        load_table(_save(tmp_path / "t.npz", **arrays))
    assert info.value.field == field, label


def test_not_an_npz_file(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(InputError, match="not a readable"):
        load_table(p)


def test_replay_reports_the_documented_fields_and_is_seeded(tmp_path: Path) -> None:
    tab = synthetic_table(300)
    path = tmp_path / "syn.npz"
    tab.save(path)
    loaded = load_table(path)
    a = replay(loaded, "smooth-ts", seed=4)
    b = replay(loaded, "smooth-ts", seed=4)
    for k in (
        "policy",
        "T",
        "K",
        "mean_cost",
        "oracle_mean_cost",
        "best_fixed_mean_cost",
        "ratio_to_oracle",
        "ratio_to_best_fixed",
        "first_10pct_ratio",
        "seconds",
    ):
        assert k in a
    assert a["mean_cost"] == b["mean_cost"]
    assert a["oracle_mean_cost"] <= a["mean_cost"]
    assert a["oracle_mean_cost"] <= a["best_fixed_mean_cost"]


def test_ips_recovers_a_fixed_policy_from_uniform_logs() -> None:
    tab = synthetic_table(3000)
    rng = np.random.default_rng(0)
    arms = rng.integers(K, size=tab.T)
    log = [
        LoggedRound(tab.contexts[t], int(arms[t]), 1.0 / K, float(tab.costs[t, arms[t]]))
        for t in range(tab.T)
    ]
    target = make_policy("fixed", K, 1, config={"arm": 4})
    out = evaluate(target, log)
    truth = tab.costs[:, 4].mean()
    for k in ("ips", "snips", "dr"):
        lo, hi = out[f"{k}_ci"]
        assert lo <= truth <= hi, (k, out[k], truth)
    assert out["trustworthy"]
    assert abs(out["dr"] - truth) / truth < 0.1


def test_ope_warns_when_propensities_are_tiny() -> None:
    tab = synthetic_table(200)
    log = [LoggedRound(tab.contexts[t], 0, 0.001, float(tab.costs[t, 0])) for t in range(200)]
    out = evaluate(make_policy("fixed", K, 1, config={"arm": 0}), log)
    assert not out["trustworthy"]
    assert "not to be trusted" in out["warnings"][0]


def test_guard_bounds_cost_against_the_baseline() -> None:
    tab = synthetic_table(1500)
    base = int(np.argmin(tab.costs.mean(axis=0)))  # the safe production default
    pol = make_policy(
        "random",
        K,
        1,
        arms=ARMS[:, None],
        config={"guard": {"baseline_arm": base, "tolerance": 0.1}},
    )
    spent = 0.0
    overrides = 0
    for t in range(tab.T):
        d = pol.choose(tab.contexts[t], t)
        overrides += d.reason == "guard:baseline"
        spent += tab.costs[t, d.arm]
        pol.update(tab.contexts[t], d.arm, float(tab.costs[t, d.arm]))
    baseline_total = tab.costs[:, base].sum()
    unguarded = tab.costs.mean(axis=1).sum()  # uniform random's expected cost
    assert unguarded > 1.3 * baseline_total  # the guard has work to do here
    assert spent <= 1.1 * baseline_total * 1.05  # within tolerance (5% estimation slack)
    assert overrides > 0


def test_replay_stops_an_arm_at_its_budget_as_a_worker_would() -> None:
    """With policy_config.fallback, a chosen arm whose cost exceeds its decision's budget
    costs the budget plus the fallback's cost in that row, learnt as censored."""
    T = 200
    rng = np.random.default_rng(5)
    fb_cost = rng.uniform(1.0, 1.2, T)
    costs = np.column_stack([fb_cost, np.full(T, 100.0), 0.5 * fb_cost])
    tab = CostTable(rng.uniform(-1, 1, (T, 1)), np.arange(3.0), costs, ["x"], [])
    config = {"fallback": {"arm": 0, "budget": 2.0}}
    run = replay_once(tab, "random", seed=1, config=config)
    slow = run.chosen == 1
    assert run.chosen[0] == 0 and slow.sum() > 30  # the fallback first, then uniform
    # stopped at ~2x the fallback's estimate, then the fallback solved
    assert np.all(run.costs[slow] < 2.0 * 1.3 + fb_cost[slow])
    assert np.all(run.costs[slow] > fb_cost[slow] + 1.5)
    assert np.array_equal(run.costs[~slow], costs[~slow, run.chosen[~slow]])
    plain = replay_once(tab, "random", seed=1)
    assert np.all(plain.costs[plain.chosen == 1] == 100.0)
    # a policy that learns sees the censored costs and keeps away from the slow arm
    learnt = replay_once(tab, "lin-ts", seed=1, config=config)
    assert (learnt.chosen[T // 2 :] == 1).sum() <= 2


def test_warm_start_cuts_early_regret_on_a_table() -> None:
    tab = synthetic_table(400, seed=1)
    earlier = synthetic_table(400, seed=2)
    oracle = tab.costs.min(axis=1)[:60].mean()
    cold = np.mean([replay_once(tab, "smooth-ts", seed=s).costs[:60].mean() for s in range(3)])
    warm = np.mean(
        [replay_once(tab, "smooth-ts", seed=s, warm=earlier).costs[:60].mean() for s in range(3)]
    )
    assert (warm - oracle) < 0.5 * (cold - oracle)


def test_warm_start_from_earlier_campaigns(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    first = client.create_campaign(
        "first", "sor", {"omega": [1.2, 1.5, 1.8]}, context_features=["shift"]
    )
    first.submit_many(
        [
            (LinearSystem.laplace2d(5, s, seed=i), {"shift": s})
            for i, s in enumerate([0.0, 0.1, 0.2, 0.3])
        ]
    )
    InlineScheduler(embedded_settings).run_until_idle()
    second = client.create_campaign(
        "second",
        "sor",
        {"omega": [1.2, 1.5, 1.8]},
        context_features=["shift"],
        warm_start_from=["first"],
    )
    with client.Session() as s:
        snap = s.query(PolicySnapshot).filter_by(campaign_id=second.id).one()
    assert snap.n_updates == 4 and snap.last_result_id == 0
    with pytest.raises(InputError) as info:
        client.create_campaign(
            "third",
            "sor",
            {"omega": [1.5]},
            context_features=["shift"],
            warm_start_from=["missing"],
        )
    assert info.value.field == "warm_start_from[0]"
    assert "third" not in client.campaigns()  # nothing stored for the refused campaign


def test_default_policy_restart_makes_the_same_choices(tmp_path: Path) -> None:
    from app.scheduler.runtime import load_runtime

    settings = Settings(home=tmp_path, snapshot_every=5, snapshot_seconds=0)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "r", "sor", {"omega": list(np.linspace(1.0, 1.9, 6))}, context_features=["shift"]
    )
    camp.submit_many(
        [
            (LinearSystem.laplace2d(5, float(s), seed=i), {"shift": float(s)})
            for i, s in enumerate(np.linspace(-0.1, 0.4, 17))
        ]
    )
    live = InlineScheduler(settings)
    live.run_until_idle()
    with client.Session() as s:
        restored = load_runtime(s, camp.id)
    lp = live.runtimes[camp.id].policy
    for k, c in enumerate(np.linspace(-0.1, 0.4, 30)):
        x = np.array([c])
        assert restored.policy.choose(x, 1000 + k) == lp.choose(x, 1000 + k)


def test_table_from_costtable_roundtrip(tmp_path: Path) -> None:
    t = CostTable(np.zeros((2, 1)), np.arange(2.0), np.ones((2, 2)), ["c"], ["a", "b"])
    t.save(tmp_path / "r.npz")
    assert load_table(tmp_path / "r.npz").arm_names == ["a", "b"]


def test_replay_converts_a_budget_in_products_with_each_rows_product_time() -> None:
    """The first decision of a levelled fallback is budgeted in products: the replay
    converts it with the row's product time, as the worker does, and stops the arm there."""
    costs = np.array([[1.0, 5.0], [1.0, 5.0]])  # the fallback (arm 0) is the cheap one here
    table = CostTable(np.zeros((2, 1)), np.arange(2, dtype=float), costs, ["x"], ["a", "b"])
    level = {"offset": float(np.log(10.0))}  # the fallback: ten products
    config = {"arm": 1, "fallback": {"arm": 0, "budget": 2.0, "level": level}}
    with pytest.raises(ValueError, match="matvec_seconds"):
        replay_once(table, "fixed", config=config)
    # 2 x 10 products of 0.1 s: arm 1 (5 s) is stopped at 2 s, the fallback solves (1 s)
    run = replay_once(table, "fixed", config=config, matvec_seconds=np.array([0.1, 0.1]))
    assert run.costs[0] == pytest.approx(3.0)
    # the fallback unseen still, and no model to compare it with: products again
    assert run.costs[1] == pytest.approx(3.0)
    wide = replay_once(table, "fixed", config=config, matvec_seconds=np.array([1.0, 1.0]))
    assert wide.costs.tolist() == [5.0, 5.0]  # within 20 s: the arm's own cost


def test_a_replay_in_products_gives_the_policy_each_cost_over_its_rows_product_time() -> None:
    """Rows whose systems differ in size by 10x: in seconds arm 1 looks 10x dearer on the
    big rows; in products (``cost_unit="matvec"``) it costs 50 on every row."""
    T = 20
    mv = np.where(np.arange(T) % 2 == 0, 1e-4, 1e-3)  # one product's seconds per row
    costs = np.stack([80.0 * mv, 50.0 * mv], axis=1)
    tab = CostTable(np.zeros((T, 1)), np.arange(2.0), costs, ["c"], [])
    config = {"cost_unit": "matvec"}
    with pytest.raises(ValueError, match="matvec_seconds"):
        replay_once(tab, "shared-ts", config=config, unordered=True)
    run = replay_once(tab, "shared-ts", config=config, unordered=True, matvec_seconds=mv)
    assert run.costs.sum() == pytest.approx(costs[np.arange(T), run.chosen].sum())
    # the same decisions as the policy fed products by hand
    pol = make_policy("shared-ts", 2, 1, config=config)
    for t in range(T):
        d = pol.choose(tab.contexts[t], key=t)
        assert d.arm == run.chosen[t]
        pol.update(tab.contexts[t], d.arm, float(costs[t, d.arm] / mv[t]))
    assert pol.estimated_cost(np.zeros(1), 1) == pytest.approx(50.0, rel=0.01)
