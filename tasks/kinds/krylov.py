"""Trial kind ``krylov``: solver selection. An arm is a whole solver configuration, a Krylov
method with a preconditioner and its parameters::

    {"method": "cg" | "gmres" | "bicgstab" | "minres",
     "preconditioner": "none" | "jacobi" | "ssor" | "ilu" | "amg-sa" | "amg-rs" | "chebyshev",
     ...parameters}

Parameters (each only where it applies; defaults in brackets): ``omega`` (ssor, in (0, 2)
[1.0]), ``drop_tol`` (ilu, in (0, 1) [1e-4]) and ``fill_factor`` (ilu, 1..100 [10]),
``strength`` (amg: the strength-of-connection threshold in [0, 1) [0.0 for amg-sa, 0.25
for amg-rs]) and ``smoother`` (amg: gauss_seidel | jacobi [gauss_seidel]), ``degree``
(chebyshev, 1..20 [3]), ``restart`` (gmres, 1..1000 [30]). ``arms="default"`` is
:data:`DEFAULT_SPD` (42 configurations for symmetric positive definite systems);
``arms="default-nonsymmetric"`` is :data:`DEFAULT_NONSYMMETRIC` (21).

The spec is the linear solvers' (``tasks.kinds.linear``). Cost: wall time in seconds on the
worker, preconditioner set-up included (``settings={"cost": "time"}``, the default), or a
deterministic work count (``"work"``: matrix-vector products plus preconditioner
applications, each in units of one product). Context features derived at submit where the
data is: see :mod:`tasks.kinds.krylov_features`. The run is ``workers.kinds.krylov``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from tasks.errors import InputError
from tasks.kinds.base import KindExample, TrialKind, warm_by_example
from tasks.kinds.krylov_features import FEATURES, system_features
from tasks.kinds.linear import validate_solver_spec
from tasks.linsys import spec_key

METHODS = ("cg", "gmres", "bicgstab", "minres")
PRECONDITIONERS = ("none", "jacobi", "ssor", "ilu", "amg-sa", "amg-rs", "chebyshev")
SMOOTHERS = ("gauss_seidel", "jacobi")
#: methods that need a symmetric matrix (and, for cg, a symmetric preconditioner)
SYMMETRIC_ONLY = ("cg", "minres")
COSTS = ("time", "work")

#: parameter -> (preconditioners or methods it belongs to, check)
PARAMS: dict[str, tuple[tuple[str, ...], Any]] = {
    "omega": (("ssor",), lambda v: _num(v) and 0.0 < v < 2.0),
    "drop_tol": (("ilu",), lambda v: _num(v) and 0.0 < v < 1.0),
    "fill_factor": (("ilu",), lambda v: _num(v) and 1.0 <= v <= 100.0),
    "strength": (("amg-sa", "amg-rs"), lambda v: _num(v) and 0.0 <= v < 1.0),
    "smoother": (("amg-sa", "amg-rs"), lambda v: v in SMOOTHERS),
    "degree": (("chebyshev",), lambda v: _int(v) and 1 <= v <= 20),
    "restart": (("gmres",), lambda v: _int(v) and 1 <= v <= 1000),
}
DEFAULTS: dict[str, Any] = {
    "omega": 1.0,
    "drop_tol": 1e-4,
    "fill_factor": 10,
    "smoother": "gauss_seidel",
    "degree": 3,
    "restart": 30,
}


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _grid(method: str, pc: str, **values: list[Any]) -> list[dict[str, Any]]:
    keys = list(values)
    return [
        {"method": method, "preconditioner": pc, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*values.values())
    ]


#: 42 configurations for symmetric positive definite systems: CG with no, Jacobi, SSOR
#: (8 omegas), smoothed-aggregation and classical AMG (4 strengths x 2 smoothers each) and
#: Chebyshev polynomial (3 degrees) preconditioning; MINRES with none or Jacobi; GMRES with
#: ILU (3 drop tolerances x 2 fill factors) and with smoothed aggregation; BiCGStab with ILU.
DEFAULT_SPD: list[dict[str, Any]] = [
    *_grid("cg", "none"),
    *_grid("cg", "jacobi"),
    *_grid("cg", "ssor", omega=[0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 1.9]),
    *_grid("cg", "amg-sa", strength=[0.0, 0.02, 0.08, 0.25], smoother=list(SMOOTHERS)),
    *_grid("cg", "amg-rs", strength=[0.25, 0.5, 0.7, 0.9], smoother=list(SMOOTHERS)),
    *_grid("cg", "chebyshev", degree=[2, 4, 8]),
    *_grid("minres", "none"),
    *_grid("minres", "jacobi"),
    *_grid("gmres", "ilu", drop_tol=[1e-2, 1e-3, 1e-4], fill_factor=[5, 10]),
    *_grid("gmres", "amg-sa", strength=[0.0, 0.08]),
    *_grid("bicgstab", "ilu", drop_tol=[1e-2, 1e-3, 1e-4]),
]
#: 21 configurations for non-symmetric systems: GMRES (restart 30 and 100) and BiCGStab,
#: each with no, Jacobi, ILU (3 drop tolerances) and classical AMG (2 strengths).
DEFAULT_NONSYMMETRIC: list[dict[str, Any]] = [
    *_grid("gmres", "none", restart=[30, 100]),
    *_grid("gmres", "jacobi", restart=[30, 100]),
    *_grid("gmres", "ilu", drop_tol=[1e-2, 1e-3, 1e-4], restart=[30, 100]),
    *_grid("gmres", "amg-rs", strength=[0.25, 0.5], restart=[30, 100]),
    *_grid("bicgstab", "none"),
    *_grid("bicgstab", "jacobi"),
    *_grid("bicgstab", "ilu", drop_tol=[1e-2, 1e-3, 1e-4]),
    *_grid("bicgstab", "amg-rs", strength=[0.25, 0.5]),
]
DEFAULT_ARMS = {"default": DEFAULT_SPD, "default-nonsymmetric": DEFAULT_NONSYMMETRIC}
#: the safe configurations a campaign falls back to unless its policy_config says otherwise:
#: CG with smoothed-aggregation AMG as pyamg sets it up by default (SPD), GMRES with ILU
SAFE_ARMS: tuple[dict[str, Any], ...] = (
    {"method": "cg", "preconditioner": "amg-sa"},
    {"method": "gmres", "preconditioner": "ilu", "drop_tol": 1e-3},
)
#: a campaign's context unless it names its own: size, conditioning, dominance, the stencil's
#: width, and whether the worker may hold the matrix's set-up already (the default cost,
#: wall time, includes the set-up: an AMG hierarchy built or reused differs several-fold)
DEFAULT_FEATURES = ("log_n", "log_cond_est", "diag_dominance", "nnz_per_row", "setup_cached")
#: the default budget, in units of the fallback's expected time: a configuration twice as
#: slow as the safe one is no candidate (the default policy's tolerance is 10%), so finishing
#: it would only measure how bad it is
DEFAULT_BUDGET = 2.0
#: the policies that take the history prior (``policy_config.prior``: app.policies.cost_prior)
PRIOR_POLICIES = ("shared-ts", "shared-kg")


def check_arm(arm: dict[str, Any], field: str) -> dict[str, Any]:
    """The arm with its defaults filled in, or ``InputError`` naming ``field.key``."""
    method, pc = arm.get("method"), arm.get("preconditioner", "none")
    if method not in METHODS:
        raise InputError(f"{field}.method", f"must be one of {list(METHODS)}, got {method!r}")
    if pc not in PRECONDITIONERS:
        raise InputError(
            f"{field}.preconditioner", f"must be one of {list(PRECONDITIONERS)}, got {pc!r}"
        )
    out: dict[str, Any] = {"method": method, "preconditioner": pc}
    for key, value in arm.items():
        if key in ("method", "preconditioner"):
            continue
        if key not in PARAMS:
            raise InputError(f"{field}.{key}", f"unknown parameter; takes {sorted(PARAMS)}")
        owners, ok = PARAMS[key]
        if pc not in owners and method not in owners:
            raise InputError(f"{field}.{key}", f"applies to {' and '.join(owners)} only")
        if not ok(value):
            raise InputError(f"{field}.{key}", f"invalid value {value!r} (see `banditq kinds`)")
        out[key] = value
    if method == "cg" and pc == "ilu":
        raise InputError(f"{field}.preconditioner", "ilu is not symmetric: use gmres or bicgstab")
    return out


def resolved(arm: dict[str, Any]) -> dict[str, Any]:
    """Every parameter the arm's method and preconditioner take, defaults filled in."""
    out = dict(arm)
    for key, (owners, _ok) in PARAMS.items():
        if arm["preconditioner"] in owners or arm["method"] in owners:
            out.setdefault(
                key, DEFAULTS.get(key, 0.25 if arm["preconditioner"] == "amg-rs" else 0.0)
            )
    return out


def safe_arm(arms: list[dict[str, Any]]) -> int | None:
    """The index of the first arm that is one of :data:`SAFE_ARMS` (parameters compared with
    their defaults filled in), in the order of that tuple; None if none is."""
    wanted = [resolved(check_arm(a, "safe")) for a in SAFE_ARMS]
    have = [resolved(check_arm(a, f"arms[{i}]")) for i, a in enumerate(arms)]
    for safe in wanted:
        if safe in have:
            return have.index(safe)
    return None


class KrylovKind(TrialKind):
    """Spec: system, tol, max_iters, return_solution, x0. Arm: a solver configuration."""

    name = "krylov"
    runner = "workers.kinds.krylov:run_krylov"
    budget_units = ("matvec",)
    #: configurations share what is learnt through their parameters, and exploration is
    #: spent where it pays back within the campaign (app.policies.shared_kg)
    default_policy = "shared-kg"

    def example(self) -> KindExample:
        return KindExample(
            [
                {"method": "cg", "preconditioner": "jacobi"},
                {"method": "gmres", "preconditioner": "ilu"},
            ],
            {"system": {"generator": "laplace2d", "m": 8}, "tol": 1e-8},
        )

    def warm_up(self) -> None:
        warm_by_example(self)  # loads scipy's solvers

    def default_arms(self, name: str) -> list[dict[str, Any]] | None:
        return [dict(a) for a in DEFAULT_ARMS[name]] if name in DEFAULT_ARMS else None

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        for i, arm in enumerate(arms):
            check_arm(arm, f"arms[{i}]")

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return validate_solver_spec(spec)

    def check_instance(self, spec: dict[str, Any], arms: list[dict[str, Any]]) -> None:
        feats = system_features(spec)
        for i, arm in enumerate(arms):
            if feats.get("symmetric") == 0.0 and arm["method"] in SYMMETRIC_ONLY:
                raise InputError(
                    f"arms[{i}].method",
                    f"{arm['method']} needs a symmetric matrix and system.A is not symmetric: "
                    "use a campaign with arms='default-nonsymmetric' (gmres, bicgstab)",
                )
            if feats.get("zero_diagonal") == 1.0 and arm["preconditioner"] in (
                "jacobi",
                "ssor",
                "chebyshev",
            ):
                raise InputError(
                    f"arms[{i}].preconditioner",
                    f"{arm['preconditioner']} divides by the diagonal; system.A has a zero on it",
                )

    def context_features(self, spec: dict[str, Any]) -> dict[str, float]:
        return {k: v for k, v in system_features(spec).items() if k in FEATURES}

    def reuse_key(self, spec: dict[str, Any]) -> str | None:
        # The worker's keys: a stored matrix by its hash (and the shifted form), any other
        # system by its whole spec.
        system = spec.get("system") or {}
        if "stored" in system:
            st = system["stored"]
            return f"csr:{st['A']['sha256']}:{st.get('alpha', 0.0)!r}:{st.get('beta', 1.0)!r}"
        return spec_key(system)

    def prepare_campaign(
        self,
        arms: list[dict[str, Any]],
        settings: dict[str, Any],
        policy: str,
        policy_config: dict[str, Any],
        features: list[str],
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], list[str]]:
        # Arms as written (their labels stay short); the worker fills in the defaults.
        # Safe by default: a bad configuration is stopped at DEFAULT_BUDGET x the safe one's
        # expected time and the safe one solves. ``"fallback": None`` opts out; a fixed
        # policy runs its one arm as asked.
        if "fallback" not in policy_config and policy != "fixed":
            safe = safe_arm(arms)
            if safe is not None:
                policy_config = {
                    **policy_config,
                    "fallback": {"arm": safe, "budget": DEFAULT_BUDGET},
                }
        features = features or list(DEFAULT_FEATURES)
        # What the history says about how these configurations compare (relative to the
        # fallback); ``"prior": None`` opts out. Timed in seconds, the policy learns each
        # time in products of the system's matrix with a vector (``cost_unit``: a unit the
        # history's level carries into, across machines and sizes), so its estimates and
        # budgets are in products from the first decision; by work the first result sets
        # the level.
        given = policy_config.get("fallback")
        fb = given.get("arm") if isinstance(given, dict) else None
        wanted = policy in PRIOR_POLICIES and "prior" not in policy_config
        if wanted and isinstance(fb, int) and not isinstance(fb, bool) and 0 <= fb < len(arms):
            from tasks.kinds.krylov_prior import campaign_prior

            prior, level = campaign_prior(arms, features, fb)
            by_time = (settings.get("kind_options") or {}).get("cost", "time") == "time"
            levelled = prior is not None and level is not None and by_time
            own: dict[str, Any] = given if isinstance(given, dict) else {}
            unlevelled = {k: v for k, v in (prior or {}).items() if k != "level"}
            if levelled and policy_config.get("cost_unit", "matvec") == "matvec":
                policy_config = {
                    **policy_config,
                    "prior": prior,
                    "fallback": {"level": level, **own},
                    "cost_unit": "matvec",
                }
            elif levelled:  # ``"cost_unit": None``: seconds, the level for budgets only
                policy_config = {
                    **policy_config,
                    "prior": unlevelled,
                    "fallback": {"level": level, **own},
                }
            elif prior is not None:
                policy_config = {**policy_config, "prior": unlevelled}
        return arms, settings, policy_config, features

    def cost_units(self, settings: dict[str, Any]) -> tuple[str, ...]:
        # by work the cost counts products already
        by_time = (settings.get("kind_options") or {}).get("cost", "time") == "time"
        return ("matvec",) if by_time else ()

    def policy_cost(self, cost: float, metrics: dict[str, Any], unit: str) -> float:
        # every krylov result (a censored one too) carries the time of one product on its
        # matrix, measured on the worker that solved it
        ms = metrics.get("matvec_ms") if unit == "matvec" else None
        value = float(ms) if isinstance(ms, int | float) and not isinstance(ms, bool) else -1.0
        if math.isfinite(value) and value > 0:
            return float(cost) / (value / 1000.0)
        raise ValueError(
            f"cost in {unit!r} needs a positive metrics.matvec_ms; the result has {ms!r}"
        )

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        cost = settings.pop("cost", "time")
        if cost not in COSTS:
            raise InputError("settings.cost", f"must be one of {list(COSTS)}, got {cost!r}")
        return {"cost": cost}
