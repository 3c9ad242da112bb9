"""What the solver kinds (``sor``, ``ssor-pcg``) share: the instance spec, the campaign
options, and turning a solve into an :class:`Outcome`.

Spec: ``{"system": <CSR or generator spec>, "tol": float, "max_iters": int,
"return_solution": bool, "x0": [float] (optional initial guess)}``. Campaign options
(``settings`` of ``create_campaign``): ``ordering`` ``natural`` (default) or ``multicolor``
(``sor`` only), ``dtype`` ``float64`` (default) or ``float32`` (multicolour on a GPU only).
Light: the client imports it. Running a solve is worker code, in :mod:`workers.kinds.solvers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks import chain
from tasks.errors import InputError, finite_number
from tasks.linsys import build_system, validate_generator, validate_stored
from tasks.solvers.generators import DIMS
from tasks.store.blobs import is_ref

MAX_ITERS_LIMIT = 10_000_000
ORDERINGS = ("natural", "multicolor")
DTYPES = ("float64", "float32")


def check_omega(value: Any, field: str) -> float:
    omega = finite_number(value, field)
    if not 0.0 < omega < 2.0:
        raise InputError(field, f"must be in the open interval (0, 2), got {value}")
    return omega


def validate_omega_arms(kind: str, arms: list[dict[str, Any]]) -> None:
    for i, arm in enumerate(arms):
        if set(arm) != {"omega"}:
            raise InputError(f"arms[{i}]", f"{kind} arms take exactly 'omega', got {sorted(arm)}")
        check_omega(arm["omega"], f"arms[{i}].omega")


def validate_solver_spec(spec: dict[str, Any], require_spd: bool = False) -> dict[str, Any]:
    """The normalized spec (or ``InputError`` naming the field). With ``require_spd`` a CSR
    system must be symmetric with a positive diagonal (generators always are)."""
    tol = spec.get("tol", 1e-8)
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol < 1:
        raise InputError("tol", f"must be a number in (0, 1), got {tol!r}")
    max_iters = spec.get("max_iters", 10_000)
    if (
        isinstance(max_iters, bool)
        or not isinstance(max_iters, int)
        or not 1 <= max_iters <= MAX_ITERS_LIMIT
    ):
        raise InputError("max_iters", f"must be an integer in 1..{MAX_ITERS_LIMIT}")
    unknown = sorted(set(spec) - {"system", "tol", "max_iters", "return_solution", "x0"})
    if unknown:
        raise InputError(
            unknown[0], "unknown key; takes system, tol, max_iters, return_solution, x0"
        )
    system = spec.get("system")
    if isinstance(system, dict) and "generator" in system:
        # A few numbers: checked, not built (the worker builds it, once per process).
        system = validate_generator(system, "system")
        n = int(system["m"]) ** DIMS.get(system["generator"], 2)
    elif isinstance(system, dict) and "stored" in system:
        system = validate_stored(system, "system")
        n = int(system["stored"]["A"]["shape"][0])
        if require_spd and system["stored"]["A"].get("symmetric") is False:
            raise InputError("system.A", "must be symmetric for conjugate gradients")
    else:
        A, _b = build_system(system if isinstance(system, dict) else {}, "system")
        n = A.shape[0]
        if require_spd:
            asym = abs(A - A.T)
            scale = float(np.abs(A.data).max()) if A.nnz else 1.0
            if asym.nnz and float(asym.max()) > 1e-12 * scale:
                raise InputError("system.A", "must be symmetric for conjugate gradients")
    out: dict[str, Any] = {
        "system": system,
        "tol": float(tol),
        "max_iters": max_iters,
        "return_solution": bool(spec.get("return_solution", False)),
    }
    if chain.is_chained(spec.get("x0")):
        out["x0"] = chain.validate(spec["x0"], n, "x0", has_matrix="stored" in (system or {}))
    elif is_ref(spec.get("x0")):
        if spec["x0"]["kind"] != "vector" or list(spec["x0"]["shape"]) != [n]:
            raise InputError("x0", f"must refer to a stored vector of length {n}")
        out["x0"] = spec["x0"]
    elif spec.get("x0") is not None:
        if isinstance(spec["x0"], dict):
            raise InputError("x0", "must be numbers, a stored vector or SolutionOf(...)")
        x0 = np.asarray(spec["x0"])
        if x0.dtype.kind not in "iuf" or x0.ndim != 1 or x0.size != n:
            raise InputError("x0", f"must be a list of {n} numbers")
        if not np.all(np.isfinite(x0)):
            raise InputError("x0", "must be finite (NaN or inf found)")
        out["x0"] = [float(v) for v in x0]
    return out


def campaign_options(settings: dict[str, Any], orderings: tuple[str, ...]) -> dict[str, Any]:
    """Validate and remove the solver options from a campaign's ``settings``."""
    opts: dict[str, Any] = {}
    ordering = settings.pop("ordering", "natural")
    if ordering not in orderings:
        raise InputError("settings.ordering", f"must be one of {list(orderings)}, got {ordering!r}")
    dtype = settings.pop("dtype", "float64")
    if dtype not in DTYPES:
        raise InputError("settings.dtype", f"must be one of {list(DTYPES)}, got {dtype!r}")
    if ordering != "natural":
        opts["ordering"] = ordering
    if dtype != "float64":
        opts["dtype"] = dtype
    return opts
