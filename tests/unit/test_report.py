"""Reports: data from the reader views, exact and estimated counterfactuals, figures, HTML,
on the embedded database with the real scheduler (trials executed inline)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from sqlalchemy import select, text, update

from app.client import Client
from app.config import Settings
from app.offline.tablecampaign import create_table_campaign, submit_table, table_arms
from app.offline.tables import CostTable, relax_table
from app.report import data as rdata
from app.report.estimates import counterfactuals
from app.report.html import write_report
from app.report.plots import PLOTS, plot_names, png
from app.report.summary import summary
from models import Trial
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.kinds.table import arm_key
from tasks.linsys import LinearSystem
from tests.inline import InlineScheduler


def _table_campaign(
    settings: Settings, T: int = 150, name: str = "tab"
) -> tuple[Client, CostTable]:
    client = Client(settings=settings)
    tab = relax_table("low", T=T, seed=3, m=6)
    camp = create_table_campaign(client, name, tab, max_in_flight=4)
    submit_table(camp, tab, chunk=64)
    InlineScheduler(settings).run_until_idle()
    return client, tab


def test_table_campaign_counterfactuals_are_exact(embedded_settings: Settings) -> None:
    client, tab = _table_campaign(embedded_settings)
    rows = client.campaign("tab").results()
    chosen = np.array([r["arm_index"] for r in rows])
    got = np.array([r["cost"] for r in rows])
    assert np.array_equal(got, tab.costs[np.arange(tab.T), chosen])  # the kind looked it up
    data = rdata.load(client.engine, "tab")
    cf = counterfactuals(data)
    assert cf.exact and np.array_equal(cf.terms, tab.costs)
    s = summary(data, cf)
    assert s["trials"] == s["succeeded"] == tab.T and s["failed"] == 0
    assert s["mean_cost"] == pytest.approx(got.mean())
    assert s["baseline_arm"] == "omega=1.0"
    assert s["baseline_mean_cost"] == pytest.approx(tab.costs[:, 0].mean())
    assert s["speedup_over_baseline"] == pytest.approx(tab.costs[:, 0].mean() / got.mean())
    best = int(np.argmin(tab.costs.mean(axis=0)))
    assert s["best_fixed_arm"] == f"omega={tab.arms[best]:g}" or s["best_fixed_arm"].startswith(
        "omega="
    )
    assert s["best_fixed_mean_cost"] == pytest.approx(tab.costs[:, best].mean())
    assert s["estimates"].startswith("exact")


def test_doubly_robust_estimates_cover_the_truth(embedded_settings: Settings) -> None:
    """Uniform logging over 3 arms with known costs x + arm: the DR estimate of each fixed
    arm's mean cost lies in its interval around the truth, and the best arm is found."""
    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "ope",
        "noop",
        [{"cost": 1.0}, {"cost": 3.0}, {"cost": 0.5}],
        policy="random",
        context_features=["x"],
    )
    xs = np.random.default_rng(0).uniform(0, 4, 600)
    camp.submit_many([(None, {"x": float(x)}, {"cost": float(x)}) for x in xs])
    InlineScheduler(embedded_settings).run_until_idle()
    data = rdata.load(client.engine, "ope")
    cf = counterfactuals(data)
    assert not cf.exact
    for arm, extra in enumerate((1.0, 3.0, 0.5)):
        lo, hi = cf.ci(arm)
        truth = xs.mean() + extra
        assert lo <= truth <= hi and hi - lo < 0.5
    assert cf.best_fixed() == 2
    s = summary(data, cf)
    assert s["baseline_arm"] == data.arm_labels[0]
    lo, hi = s["speedup_interval"]
    assert lo < (xs.mean() + 1.0) / s["mean_cost"] < hi


def test_every_plot_is_a_titled_figure_with_content(embedded_settings: Settings) -> None:
    client, _tab = _table_campaign(embedded_settings)
    data = rdata.load(client.engine, "tab")
    assert data.policy() is not None  # the arms plot draws the policy's best arm
    for name in plot_names(data):
        fig = PLOTS[name](data, None)
        assert isinstance(fig, Figure)
        assert fig.get_suptitle().endswith(": tab"), name
        drawn = sum(len(ax.lines) + len(ax.collections) + len(ax.patches) for ax in fig.axes)
        assert drawn > 0, name
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes), name
        blob = png(fig)
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    assert "inference" not in plot_names(data)
    arms_fig = client.campaign("tab").plot("arms")
    assert any(line.get_label() == "policy's best arm now" for line in arms_fig.axes[0].lines)
    with pytest.raises(InputError, match="kind"):
        client.campaign("tab").plot("pie")


def test_report_html_is_self_contained(embedded_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, _tab = _table_campaign(embedded_settings, T=60)
    out = client.campaign("tab").report(str(tmp_path / "r.html"), str(tmp_path / "png"))
    page = Path(out).read_text(encoding="utf-8")
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(plot_names(rdata.load(client.engine, "tab")))
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(
        f"{k}.png" for k in plot_names(rdata.load(client.engine, "tab"))
    )


def test_names_and_errors_from_the_database_are_escaped(
    embedded_settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The client refuses such names, but a report must not trust what the database holds."""
    client = Client(settings=embedded_settings)
    camp = client.create_campaign("x", "noop", [{"cost": 1.0}])
    camp.submit(None, {})
    InlineScheduler(embedded_settings).run_until_idle()
    evil = "<script>alert(1)</script>"
    with client.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET name = :n"), {"n": evil})
        conn.execute(text("UPDATE results SET error = '<img src=x onerror=alert(2)>'"))
    path = tmp_path / "r.html"
    write_report(rdata.load(client.engine, evil), path)
    page = path.read_text()
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page


def test_a_campaign_without_results_still_reports(embedded_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = Client(settings=embedded_settings)
    client.create_campaign("empty", "sor", {"omega": [1.0, 1.5]}, context_features=["shift"])
    data = rdata.load(client.engine, "empty")
    s = summary(data)
    assert s["trials"] == 0 and s["mean_cost"] is None and s["speedup_over_baseline"] is None
    written = write_report(data, tmp_path / "e.html", tmp_path / "png")
    assert "no results yet" not in written["html"].read_text()  # text is in the images
    assert all(p.stat().st_size > 1000 for p in written.values())
    with pytest.raises(Exception, match="no campaign named"):
        rdata.load(client.engine, "missing")


def test_lease_expiries_are_kept_and_reported(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_campaign("lease", "noop", [{"cost": 1.0}], max_attempts=2)
    camp.submit(None, {})
    sch = InlineScheduler(embedded_settings)
    sch.sweep()
    sch.step()
    assert len(sch.published) == 1
    past = datetime.now(UTC) - timedelta(seconds=5)
    for _attempt in (1, 2):
        sch.sweep()  # records the publish (and its fresh lease) first
        with client.Session() as s, s.begin():
            s.execute(update(Trial).values(lease_expires_at=past, state="running"))
        sch.sweep()
    data = rdata.load(client.engine, "lease")
    assert data.faults.values["lease expiries"].sum() == 2
    with client.engine.connect() as conn:
        events = conn.execute(
            text("SELECT attempt, event FROM trial_event_log ORDER BY attempt")
        ).all()
    assert [tuple(e) for e in events] == [(1, "lease_expired"), (2, "lease_failed")]
    assert summary(data)["failed"] == 1


def test_table_kind_validates_and_looks_up() -> None:
    kind = get_kind("table")
    arm = {"omega": 1.5}
    spec = kind.validate_spec({"costs": {arm_key(arm): 7}})
    assert kind.run(spec, arm).cost == 7.0
    for bad, field in (
        ({}, "costs"),
        ({"costs": {"a": -1}}, "costs[a]"),
        ({"costs": {"a": float("nan")}}, "costs[a]"),
        ({"costs": {"a": True}}, "costs[a]"),
    ):
        with pytest.raises(InputError) as info:
            kind.validate_spec(bad)
        assert info.value.field == field
    with pytest.raises(InputError, match="no cost for arm"):
        kind.run(spec, {"omega": 1.0})
    tab = CostTable(np.zeros((2, 1)), np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((2, 2)))
    assert table_arms(tab) == [{"x0": 1.0, "x1": 2.0}, {"x0": 3.0, "x1": 4.0}]


def test_inference_plot_shows_latency_quality_and_violations(embedded_settings: Settings) -> None:
    """Results as an inference campaign logs them (latency per arm, monitored quality)."""
    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "inf", "noop", [{"cost": 1.0}, {"cost": 2.0}], policy="random", context_features=["tokens"]
    )
    camp.submit_many([(None, {"tokens": float(t)}) for t in range(8, 208, 5)])
    InlineScheduler(embedded_settings).run_until_idle()
    with client.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaigns SET kind = 'inference', "
                'settings = \'{"kind_options": {"quality_floor": 0.99}}\''
            )
        )
        conn.execute(
            text(
                "UPDATE results SET latency_ms = cost * 10, "
                "quality = CASE WHEN cost > 1.5 THEN 0.95 ELSE 0.999 END"
            )
        )
    data = rdata.load(client.engine, "inf")
    assert data.quality_floor() == 0.99 and "inference" in plot_names(data)
    fig = PLOTS["inference"](data, None)
    bars = [p.get_height() for p in fig.axes[2].patches]
    assert bars == [0, int((data.rounds["arm"] == 1).sum())] and bars[1] > 0
    assert any(line.get_label().startswith("floor") for line in fig.axes[1].lines)


def test_summary_says_not_enough_data_instead_of_a_number(embedded_settings: Settings) -> None:
    """A baseline never logged: no speed-up, no interval, a note that says how to get one;
    with a holdout on it the same campaign is measured, and its interval holds the
    estimate."""
    for name, config in (("few", None), ("held", {"holdout": {"arm": 0, "share": 0.3}})):
        client = Client(settings=embedded_settings)
        camp = client.create_campaign(
            name,
            "noop",
            [{"cost": 1.0}, {"cost": 3.0}, {"cost": 0.5}],
            policy="fixed",
            policy_config={"arm": 2, **(config or {})},
            context_features=["x"],
        )
        xs = np.random.default_rng(1).uniform(0, 4, 80)
        camp.submit_many([(None, {"x": float(x)}, {"cost": float(x)}) for x in xs])
        InlineScheduler(embedded_settings).run_until_idle()
        s = summary(rdata.load(client.engine, name))
        if config is None:
            assert s["speedup_over_baseline"] is None and s["speedup_interval"] == [None, None]
            assert "not enough data" in s["notes"][0] and "'holdout'" in s["notes"][0]
            assert s["best_fixed_arm"] == rdata.load(client.engine, name).arm_labels[2]
        else:
            lo, hi = s["speedup_interval"]
            assert lo <= s["speedup_over_baseline"] <= hi and s["notes"] == []


def test_the_reports_policy_learns_costs_as_the_scheduler_gives_them(
    embedded_settings: Settings,
) -> None:
    """A krylov campaign timed in seconds: the report's copy of the policy is fed each
    applied result's time in products (cost over metrics.matvec_ms), as the scheduler feeds
    its own."""
    from models import Result

    client = Client(settings=embedded_settings)
    camp = client.create_campaign("kr", "krylov", "default")
    for eps in (1.0, 0.1, 0.01):
        camp.submit(LinearSystem.generate("anisotropic2d", 12, eps=eps), tol=1e-8)
    InlineScheduler(embedded_settings).run_until_idle()
    data = rdata.load(client.engine, "kr")
    assert data.overview["policy_config"]["cost_unit"] == "matvec"
    with client.engine.connect() as conn:
        tail = rdata._policy_tail(conn, "kr", 0, data.features, data.overview)
    with client.Session() as s:
        rows = [(r.cost, r.metrics) for r in s.scalars(select(Result).order_by(Result.id))]
    assert len(tail) == len(rows) == 3
    for (_x, _arm, learnt, _q), (cost, metrics) in zip(tail, rows, strict=True):
        assert learnt == pytest.approx(cost / (metrics["matvec_ms"] / 1000.0))
        assert learnt > 1.0  # products, not seconds
