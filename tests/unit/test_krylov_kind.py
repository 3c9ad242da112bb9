"""The ``krylov`` kind: whole solver configurations as arms (method x preconditioner x
parameters), validated with the field named, run on the worker with set-up cached per
matrix, wall time or a deterministic work count as the cost, features from the system."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import select

from app.client import Client
from app.config import Settings
from models import Campaign
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.kinds.krylov import DEFAULT_BUDGET, DEFAULT_NONSYMMETRIC, DEFAULT_SPD
from tasks.kinds.krylov_features import matrix_features, system_features
from tasks.linsys import LinearSystem, build_system, laplace2d
from tests.inline import InlineScheduler
from tests.unit.test_solvers import _csr_system
from workers.kinds.krylov import matvec_seconds, run_krylov

KIND = get_kind("krylov")
AMG_DEFAULTS = {"strength": 0.0, "smoother": "gauss_seidel"}


def _convection_diffusion(m: int, peclet: float) -> sp.csr_matrix:
    """Upwinded -Laplace u + peclet * du/dx on an m x m grid: non-symmetric, an M-matrix."""
    one = np.ones(m)
    T = sp.diags([-(1 + peclet) * one[:-1], (4 + peclet) * one, -one[:-1]], [-1, 0, 1])
    S = sp.diags([-one[:-1], -one[:-1]], [-1, 1])
    return sp.csr_matrix(sp.kron(sp.eye(m), T) + sp.kron(S, sp.eye(m)))


def test_default_grids_are_valid_and_documented_sizes() -> None:
    assert 40 <= len(DEFAULT_SPD) <= 120 and len(DEFAULT_NONSYMMETRIC) == 21
    for grid in (DEFAULT_SPD, DEFAULT_NONSYMMETRIC):
        KIND.validate_arms(grid)
        labels = [KIND.arm_label(a) for a in grid]
        assert len(set(labels)) == len(labels)
    assert not any(a["method"] in ("cg", "minres") for a in DEFAULT_NONSYMMETRIC)


@pytest.mark.parametrize(
    ("arm", "field"),
    [
        ({"method": "qmr", "preconditioner": "none"}, "arms[0].method"),
        ({"method": "cg", "preconditioner": "ic"}, "arms[0].preconditioner"),
        ({"method": "cg", "preconditioner": "ssor", "omega": 2.5}, "arms[0].omega"),
        ({"method": "cg", "preconditioner": "jacobi", "omega": 1.2}, "arms[0].omega"),
        ({"method": "cg", "preconditioner": "amg-sa", "smoother": "sor"}, "arms[0].smoother"),
        ({"method": "cg", "preconditioner": "none", "restart": 10}, "arms[0].restart"),
        ({"method": "gmres", "preconditioner": "ilu", "fill_factor": 0}, "arms[0].fill_factor"),
        ({"method": "cg", "preconditioner": "ilu"}, "arms[0].preconditioner"),
        ({"method": "cg", "preconditioner": "none", "tolerance": 1}, "arms[0].tolerance"),
    ],
)
def test_bad_arms_are_refused_naming_the_field(arm: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        KIND.validate_arms([arm])
    assert err.value.field == field


def test_every_default_configuration_solves_a_poisson_system() -> None:
    m = 12
    A = laplace2d(m)
    b = np.random.default_rng(0).standard_normal(m * m)
    spec = KIND.validate_spec({"system": _csr_system(A, b), "tol": 1e-8, "max_iters": 2000})
    for arm in DEFAULT_SPD:
        out = run_krylov(spec, arm, {"cost": "work"})
        assert out.converged, arm
        assert out.residual is not None and out.residual <= 1e-7, (arm, out.residual)
        assert out.cost == out.metrics["work"] > 0 and out.metrics["matvecs"] >= 1


def test_nonsymmetric_configurations_solve_convection_diffusion() -> None:
    A = _convection_diffusion(10, 5.0)
    b = np.ones(A.shape[0])
    spec = KIND.validate_spec({"system": _csr_system(A, b), "tol": 1e-8, "max_iters": 3000})
    for arm in DEFAULT_NONSYMMETRIC:
        out = run_krylov(spec, arm, {"cost": "time"})
        assert out.converged, arm
        assert out.cost == pytest.approx(
            (out.metrics["setup_ms"] + out.metrics["solve_ms"]) / 1000.0
        )


def test_work_is_deterministic_and_the_second_solve_pays_no_setup() -> None:
    spec = KIND.validate_spec({"system": {"generator": "laplace2d", "m": 24}, "tol": 1e-8})
    arm = {"method": "cg", "preconditioner": "amg-sa", "strength": 0.0}
    first = run_krylov(spec, arm, {"cost": "work"})
    second = run_krylov(spec, arm, {"cost": "work"})
    assert first.cost == second.cost and first.iterations == second.iterations
    assert not first.metrics["precond_cached"] and second.metrics["precond_cached"]
    assert second.metrics["setup_ms"] < first.metrics["setup_ms"]
    # one product's time, measured once per matrix: every trial on it reports the same
    assert first.metrics["matvec_ms"] > 0
    assert second.metrics["matvec_ms"] == first.metrics["matvec_ms"]


def test_features_from_the_system() -> None:
    A = laplace2d(10)
    f = matrix_features(A)
    assert f["symmetric"] == 1.0 and f["nnz_per_row"] == pytest.approx(A.nnz / 100)
    assert f["diag_dominance"] == pytest.approx(1.0) and f["zero_diagonal"] == 0.0
    # the Jacobi-scaled 5-point Laplacian: cond = cot^2(pi h / 2) ~ 48 at m = 10
    assert 1.2 < f["log_cond_est"] <= np.log10(1 / np.tan(np.pi / 22) ** 2) + 1e-9
    g = system_features({"system": {"generator": "anisotropic2d", "m": 30, "eps": 0.001}})
    assert g["anisotropy"] == pytest.approx(3.0) and g["log_n"] == pytest.approx(np.log10(900))
    nonsym = matrix_features(_convection_diffusion(6, 2.0))
    assert nonsym["symmetric"] == 0.0 and "log_cond_est" not in nonsym


def test_a_campaign_refuses_systems_its_arms_cannot_solve(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_campaign("solvers", "krylov", "default", settings={"cost": "work"})
    with client.Session() as s:
        from app.client import store

        assert store.arm_values(s, camp.id) == DEFAULT_SPD
    A = _convection_diffusion(6, 2.0)
    with pytest.raises(InputError) as err:
        camp.submit(LinearSystem(A, np.ones(36)))
    assert err.value.field.startswith("arms[") and err.value.field.endswith("].method")
    assert "default-nonsymmetric" in err.value.message
    with pytest.raises(InputError, match="no arm set named"):
        client.create_campaign("x", "sor", "default")
    with pytest.raises(InputError) as err:
        client.create_campaign("y", "krylov", "default", settings={"cost": "flops"})
    assert err.value.field == "settings.cost"
    # a symmetric system goes in, with its features as context, and is solved
    ids = camp.submit_many(
        [(LinearSystem(laplace2d(m), np.ones(m * m)), {}) for m in (8, 12)], tol=1e-8
    )
    ids += [camp.submit(LinearSystem.generate("anisotropic2d", 10, eps=0.01), tol=1e-8)]
    InlineScheduler(embedded_settings).run_until_idle()
    rows = camp.results()
    assert len(rows) == len(ids) and all(r["status"] == "succeeded" for r in rows)
    assert all(r["converged"] and r["cost"] > 0 for r in rows)
    assert {"log_n", "log_cond_est", "diag_dominance"} <= set(rows[0]["context"])


def test_an_arm_over_its_budget_stops_and_the_fallback_solves() -> None:
    spec = KIND.validate_spec({"system": {"generator": "laplace2d", "m": 32}, "tol": 1e-8})
    slow = {"method": "cg", "preconditioner": "none"}
    safe = {"method": "cg", "preconditioner": "amg-sa"}
    alone = run_krylov(spec, slow, {"cost": "work"})
    budget = alone.cost / 4
    out = run_krylov(spec, slow, {"cost": "work", "budget": budget, "fallback_arm": safe})
    assert out.censored and out.converged and out.residual is not None and out.residual <= 1e-8
    assert budget < out.metrics["arm_cost"] <= budget + 1  # stopped within one product
    assert out.cost == pytest.approx(out.metrics["arm_cost"] + out.metrics["fallback_cost"])
    assert out.cost < alone.cost and out.metrics["fallback"] == safe
    # an arm that stops without converging (its iteration cap) hands over too
    capped = KIND.validate_spec({**spec, "max_iters": 5})
    out = run_krylov(capped, slow, {"cost": "time", "budget": 1e9, "fallback_arm": safe})
    assert out.censored and out.metrics["arm_stopped"] == "did not converge"
    # within budget: the arm's own solve, not censored
    out = run_krylov(spec, safe, {"cost": "work", "budget": 1e9, "fallback_arm": slow})
    assert not out.censored and "arm_cost" not in out.metrics


def test_a_budget_in_products_is_converted_with_the_products_time_measured_here() -> None:
    """``budget_unit="matvec"``: by time, the budget is that many products of the system's
    matrix, timed by the worker; by work (which counts products), taken as it is."""
    spec = KIND.validate_spec({"system": {"generator": "laplace2d", "m": 32}, "tol": 1e-8})
    slow = {"method": "cg", "preconditioner": "none"}
    safe = {"method": "cg", "preconditioner": "amg-sa"}
    A, _b = build_system(spec["system"])
    assert 0 < matvec_seconds(A) < 0.1
    tight = {"budget": 1.0, "budget_unit": "matvec", "fallback_arm": safe}
    out = run_krylov(spec, slow, {"cost": "time", **tight})
    assert out.censored and out.metrics["arm_stopped"].startswith("stopped at its budget")
    assert "budget_unit" not in out.metrics
    loose = {**tight, "budget": 1e9}
    out = run_krylov(spec, slow, {"cost": "time", **loose})
    assert not out.censored and out.converged
    out = run_krylov(spec, slow, {"cost": "work", **tight, "budget": 10.0})
    assert out.censored and 10.0 < out.metrics["arm_cost"] <= 11.0


def test_a_decision_budget_reaches_the_worker_and_comes_back_censored(
    embedded_settings: Settings,
) -> None:
    """policy_config.fallback on a krylov campaign: decisions carry the budget and the
    fallback configuration to the worker; a stopped arm's result is recorded censored."""
    client = Client(settings=embedded_settings)
    arms = [
        {"method": "cg", "preconditioner": "amg-sa"},
        {"method": "cg", "preconditioner": "none"},
    ]
    camp = client.create_campaign(
        "budgeted",
        "krylov",
        arms,
        policy="fixed",
        policy_config={"arm": 1, "fallback": {"arm": 0, "budget": 1.5}},
        settings={"cost": "work"},
        max_in_flight=1,
    )
    camp.submit_many([(LinearSystem.generate("laplace2d", 32), {}) for _ in range(4)], tol=1e-8)
    sch = InlineScheduler(embedded_settings)
    sch.run_until_idle()
    sent = [m for m in sch.publisher.sent if m["campaign"] == "budgeted"]
    assert "budget" not in (sent[0].get("options") or {})  # the fallback is played first
    later = [m["options"] for m in sent[1:]]
    assert later and all(o["fallback_arm"] == arms[0] and o["budget"] > 0 for o in later)
    rows = camp.results()
    assert all(r["status"] == "succeeded" and r["converged"] for r in rows)
    with client.engine.connect() as c:
        censored = c.exec_driver_sql("SELECT count(*) FROM results WHERE censored").scalar()
    assert censored == len(later)  # plain CG needs far more than 1.5x AMG's work here


def test_the_first_decisions_are_budgeted_in_products_of_the_matrix(
    embedded_settings: Settings,
) -> None:
    """A default krylov campaign (history prior, fallback with its level): the first
    decision is the policy's own, not the fallback's, its budget in products; the worker
    converts it and the trial is recorded; while the fallback has not run, later budgets
    stay in products (its level prices it on each system)."""
    client = Client(settings=embedded_settings)
    camp = client.create_campaign("levelled", "krylov", "default", max_in_flight=1)
    systems = [(LinearSystem.generate("laplace2d", 24), {}) for _ in range(3)]
    camp.submit_many(systems, tol=1e-8)
    sch = InlineScheduler(embedded_settings)
    sch.run_until_idle()
    sent = [m for m in sch.publisher.sent if m["campaign"] == "levelled"]
    first = sent[0]["options"] or {}
    assert first.get("budget_unit") == "matvec" and first["budget"] > 100  # ~2 x e^7
    assert first["fallback_arm"]["preconditioner"] == "amg-sa"
    rows = camp.results()
    assert len(rows) == 3 and all(r["status"] == "succeeded" and r["converged"] for r in rows)
    with client.engine.connect() as c:
        units = c.exec_driver_sql(
            "SELECT t.budget_unit, t.reason, a.value FROM trials t JOIN arms a "
            "ON a.id = t.arm_id ORDER BY t.id"
        ).all()
    assert units[0][0] == "matvec" and units[0][1] != "fallback:first"
    fallback = first["fallback_arm"]
    ran_fallback = False
    for unit, _reason, value in units:
        arm = json.loads(value) if isinstance(value, str) else value
        if arm == fallback:
            ran_fallback = True
        elif not ran_fallback:
            assert unit == "matvec", units
    client.close()


def test_every_configuration_on_an_indefinite_system_converges_or_says_so() -> None:
    """A symmetric indefinite system (a Laplacian shifted into the middle of its spectrum):
    each default configuration either reaches the tolerance, or reports converged=False
    with its true residual, or raises with a message (a failed trial naming why)."""
    m = 10
    A = sp.csr_matrix(laplace2d(m) - 2.5 * sp.eye(m * m))
    b = np.random.default_rng(1).standard_normal(m * m)
    spec = KIND.validate_spec({"system": _csr_system(A, b), "tol": 1e-8, "max_iters": 500})
    outcomes = {"converged": 0, "not converged": 0, "raised": 0}
    for arm in DEFAULT_SPD + DEFAULT_NONSYMMETRIC:
        try:
            out = run_krylov(spec, arm, {"cost": "work"})
        except Exception as exc:
            assert str(exc), arm
            outcomes["raised"] += 1
            continue
        if out.converged:
            assert out.residual is not None and out.residual <= 1e-8, arm
            outcomes["converged"] += 1
        else:
            assert out.residual is None or out.residual > 1e-8, arm
            outcomes["not converged"] += 1
    assert outcomes["converged"] > 0, outcomes  # MINRES and GMRES handle it


def test_a_stored_matrix_carries_its_conditioning_features(tmp_path: Path) -> None:
    """A matrix too large for the message goes to the store at submit; the default features
    (log_cond_est among them) come from what its upload recorded, as for an inline one
    (before, such a submit was refused: log_cond_est missing)."""
    settings = Settings(home=tmp_path / "home", inline_bytes=1024)
    client = Client(settings=settings)
    camp = client.create_campaign("stored", "krylov", "default", settings={"cost": "work"})
    A = laplace2d(20)
    iid = camp.submit(LinearSystem(A, np.ones(400)), tol=1e-8)
    with client.Session() as s:
        from models import Instance

        inst = s.get(Instance, iid)
        assert inst is not None and "stored" in inst.spec["system"]
        ctx = inst.context
    assert ctx["log_cond_est"] == pytest.approx(matrix_features(A)["log_cond_est"])
    assert ctx["diag_dominance"] == pytest.approx(1.0)
    # a shifted form of a stored matrix: its own dominance and conditioning are unknown
    handle = client.store_matrix(A)
    shifted = system_features(
        {"system": LinearSystem.affine(handle, np.ones(400), 1.0, 2.0).to_spec(client._put, 1024)}
    )
    assert "log_cond_est" not in shifted and shifted["symmetric"] == 1.0


def test_a_time_step_with_the_same_stored_matrix_pays_no_set_up_again(tmp_path: Path) -> None:
    """I + s L of one stored L, solved twice in a worker process (a constant time step): the
    second trial finds the shifted form and its AMG hierarchy cached (before, each trial
    built a new shifted form and so a new hierarchy)."""
    from workers import context as wcontext

    settings = Settings(home=tmp_path / "home", inline_bytes=1024)
    client = Client(settings=settings)
    wcontext.configure(settings)
    try:
        handle = client.store_matrix(laplace2d(80) * 81**2)
        system = LinearSystem.affine(handle, np.ones(6400), 1.0, 5e-4)
        spec = KIND.validate_spec({"system": system.to_spec(client._put, 1024), "tol": 1e-8})
        arm = {"method": "cg", "preconditioner": "amg-sa"}
        first = run_krylov(spec, arm, {"cost": "time"})
        second = run_krylov(spec, arm, {"cost": "time"})
        assert first.converged and second.converged
        assert not first.metrics["precond_cached"] and second.metrics["precond_cached"]
        assert second.metrics["setup_ms"] < 0.05 * first.metrics["setup_ms"]
        other = LinearSystem.affine(handle, np.ones(6400), 1.0, 1e-3)  # another step size
        spec2 = KIND.validate_spec({"system": other.to_spec(client._put, 1024), "tol": 1e-8})
        assert not run_krylov(spec2, arm, {"cost": "time"}).metrics["precond_cached"]
    finally:
        wcontext.reset()
        client.close()


def test_a_repeated_matrix_is_a_warm_context(tmp_path: Path) -> None:
    """``setup_cached``: 0 for a matrix this handle has not sent, 1 for one it has (the same
    stored matrix and shift, or the same spec)."""
    settings = Settings(home=tmp_path / "home", inline_bytes=1024)
    client = Client(settings=settings)
    camp = client.create_campaign(
        "warm",
        "krylov",
        "default",
        context_features=["log_n", "diag_spread", "setup_cached"],
        settings={"cost": "time"},
    )
    handle = client.store_matrix(laplace2d(20))
    step = LinearSystem.affine(handle, np.ones(400), 1.0, 0.01)
    other = LinearSystem.affine(handle, np.ones(400), 1.0, 0.02)
    gen = LinearSystem.generate("anisotropic2d", 12, eps=0.1)
    ids = camp.submit_many([(s, {}) for s in (step, step, other, gen, gen)], tol=1e-8)
    with client.Session() as s:
        from models import Instance

        warm = [s.get(Instance, i).context["setup_cached"] for i in ids]  # type: ignore[union-attr]
    assert warm == [0.0, 1.0, 0.0, 0.0, 1.0]
    client.close()


def test_a_campaign_falls_back_to_the_safe_configuration_by_default(
    embedded_settings: Settings,
) -> None:
    """Unless policy_config says otherwise, a krylov campaign whose arms hold the kind's safe
    configuration gets it as fallback with the default budget; ``"fallback": None`` opts
    out; arms without it get none."""
    client = Client(settings=embedded_settings)

    def config(name: str, arms: object, **kwargs: object) -> dict[str, object]:
        client.create_campaign(name, "krylov", arms, **kwargs)  # type: ignore[arg-type]
        with client.Session() as s:
            camp = s.scalars(select(Campaign).where(Campaign.name == name)).one()
            return dict(camp.policy_config or {})

    def fallback(cfg: dict[str, object]) -> dict[str, object]:
        """The fallback without the level the history prior brings (tested below)."""
        fb = cfg["fallback"]
        assert isinstance(fb, dict)
        return {k: v for k, v in fb.items() if k != "level"}

    safe = DEFAULT_SPD.index({"method": "cg", "preconditioner": "amg-sa", **AMG_DEFAULTS})
    spd = config("spd", "default")
    assert fallback(spd) == {"arm": safe, "budget": DEFAULT_BUDGET}
    # with the history prior, the fallback's level in products (so no fallback-first solve)
    level = spd["fallback"]["level"]  # type: ignore[index]
    assert 5.0 < level["offset"] < 10.0 and len(level["slope"]) == len(spd["prior"]["center"])  # type: ignore[index]
    assert "level" not in config("work", "default", settings={"cost": "work"})["fallback"]  # type: ignore[operator]
    bare = config("bare", "default", policy_config={"prior": None})["fallback"]
    assert "level" not in bare  # type: ignore[operator]
    ns = config("ns", "default-nonsymmetric")["fallback"]
    assert DEFAULT_NONSYMMETRIC[ns["arm"]] == {  # type: ignore[index]
        "method": "gmres",
        "preconditioner": "ilu",
        "drop_tol": 1e-3,
        "restart": 30,
    }
    own = [{"method": "cg", "preconditioner": "jacobi"}, {"method": "cg"}]
    assert "fallback" not in config("own", own)
    # written without its defaults, the safe configuration is still found
    mine = [{"method": "cg"}, {"method": "cg", "preconditioner": "amg-sa", "strength": 0.0}]
    assert fallback(config("mine", mine)) == {"arm": 1, "budget": DEFAULT_BUDGET}
    assert config("off", "default", policy_config={"fallback": None})["fallback"] is None
    fixed = config("fixed", "default", policy="fixed", policy_config={"arm": 3})
    assert "fallback" not in fixed  # the one arm asked for, from the first trial on
    chosen = {"arm": 0, "budget": 4.0}
    assert fallback(config("set", "default", policy_config={"fallback": chosen})) == chosen
    own_level = {**chosen, "level": None}  # said: kept (the fallback solves first)
    kept = config("kept", "default", policy_config={"fallback": own_level})["fallback"]
    assert kept == own_level
    # timed in seconds, the policy learns products (the level's unit); where the kind cannot
    # convert (by work, another kind) a unit asked for is refused, naming the field
    assert spd["cost_unit"] == "matvec" and spd["prior"]["level"]["offset"] == level["offset"]  # type: ignore[index]
    assert "cost_unit" not in config("work2", "default", settings={"cost": "work"})
    for kind, arms, settings in (
        ("krylov", "default", {"cost": "work"}),
        ("sor", {"omega": [1.0, 1.5]}, {}),
    ):
        with pytest.raises(InputError) as err:
            client.create_campaign(
                f"unit-{kind}",
                kind,
                arms,  # type: ignore[arg-type]
                settings=settings,
                policy_config={"cost_unit": "matvec"},
            )
        assert err.value.field == "policy_config.cost_unit", err.value
