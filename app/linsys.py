"""Linear systems as wire specs: CSR arrays plus right-hand side, or a generator spec.

Validation lives here so that the client (at submit time) and the worker (on what arrives over
the wire) apply the same rules and name the same fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from app.errors import InputError
from tasks.solvers import generators


def _real_array(field: str, values: Any, *, integer: bool = False) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind in "cSUVO":
        raise InputError(field, f"must be an array of real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        raise InputError(field, "must be numeric, got booleans")
    if arr.ndim != 1:
        raise InputError(field, f"must be 1-D, got shape {arr.shape}")
    if integer:
        whole = arr.size == 0 or arr.dtype.kind in "iu"
        if not whole and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise InputError(field, "must hold integers")
        return arr.astype(np.int64)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(field, "must be finite (NaN or inf found)")
    return arr


def validate_csr(
    n: Any, indptr: Any, indices: Any, data: Any, b: Any, field: str = "system"
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Check CSR arrays and right-hand side; return (A, b) or raise ``InputError``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 1:
        raise InputError(f"{field}.n", f"must be a positive integer, got {n!r}")
    n = int(n)
    ip = _real_array(f"{field}.indptr", indptr, integer=True)
    ix = _real_array(f"{field}.indices", indices, integer=True)
    vals = _real_array(f"{field}.data", data)
    rhs = _real_array(f"{field}.b", b)
    if ip.size != n + 1:
        raise InputError(f"{field}.indptr", f"must have n+1={n + 1} entries, got {ip.size}")
    if ip[0] != 0 or np.any(np.diff(ip) < 0):
        raise InputError(f"{field}.indptr", "must start at 0 and be non-decreasing")
    if ix.size != vals.size or ip[-1] != ix.size:
        raise InputError(
            f"{field}.indices",
            f"indices ({ix.size}), data ({vals.size}) and indptr[-1] ({ip[-1]}) must agree",
        )
    if ix.size and (ix.min() < 0 or ix.max() >= n):
        raise InputError(f"{field}.indices", f"column indices must be in 0..{n - 1}")
    if rhs.size != n:
        raise InputError(f"{field}.b", f"must have length n={n}, got {rhs.size}")
    A = sp.csr_matrix((vals, ix, ip), shape=(n, n))
    A.sum_duplicates()
    A.eliminate_zeros()
    A.sort_indices()
    diag = A.diagonal()
    bad = np.flatnonzero(diag <= 0)
    if bad.size:
        raise InputError(
            f"{field}.diagonal",
            f"SOR needs a positive diagonal; row {int(bad[0])} has {diag[bad[0]]!r}",
        )
    if not np.any(rhs):
        raise InputError(f"{field}.b", "must not be all zeros (relative residual undefined)")
    return A, rhs


def laplace2d(m: int, shift: float = 0.0) -> sp.csr_matrix:
    """5-point Laplacian on an m-by-m interior grid (diagonal 4, no h^2 scaling) + shift*I."""
    return generators.build_matrix({"generator": "laplace2d", "m": m, "shift": float(shift)})


paper_rhs = generators.paper_rhs


def validate_generator(spec: dict[str, Any], field: str = "system") -> dict[str, Any]:
    """A normalized generator spec (see ``tasks.solvers.generators``) or ``InputError``."""
    return generators.validate(spec, field)


def build_system(spec: dict[str, Any], field: str = "system") -> tuple[sp.csr_matrix, np.ndarray]:
    """(A, b) from a validated or untrusted wire spec."""
    if not isinstance(spec, dict):
        raise InputError(field, "must be an object")
    if "generator" in spec:
        return generators.build(validate_generator(spec, field))
    return validate_csr(
        spec.get("n"),
        spec.get("indptr"),
        spec.get("indices"),
        spec.get("data"),
        spec.get("b"),
        field,
    )


class LinearSystem:
    """A system ``A x = b`` to be solved by a worker.

    ``LinearSystem(A, b)`` takes a scipy sparse matrix or a dense 2-D array and a 1-D right-hand
    side; ``LinearSystem.laplace2d(m, shift, seed)`` is a spec the worker expands locally, so
    only four numbers travel. Validation happens here, at construction.
    """

    def __init__(self, A: Any, b: Any) -> None:
        if sp.issparse(A):
            mat = sp.csr_matrix(A)
        else:
            arr = np.asarray(A)
            if arr.dtype == object or arr.dtype.kind in "cSUVO":
                raise InputError("system.A", f"must be real, got dtype {arr.dtype}")
            if arr.ndim != 2:
                raise InputError("system.A", f"must be 2-D, got shape {arr.shape}")
            mat = sp.csr_matrix(arr)
        if mat.dtype.kind == "c":
            raise InputError("system.A", "must be real, got a complex matrix")
        rows, cols = mat.shape
        if rows != cols or rows == 0:
            raise InputError("system.A", f"must be square and non-empty, got shape {mat.shape}")
        A_ok, b_ok = validate_csr(
            rows, mat.indptr, mat.indices, mat.data, b if b is not None else [], "system"
        )
        self._spec: dict[str, Any] = {
            "n": rows,
            "indptr": A_ok.indptr.tolist(),
            "indices": A_ok.indices.tolist(),
            "data": A_ok.data.tolist(),
            "b": b_ok.tolist(),
        }
        self.n = rows

    @classmethod
    def laplace2d(cls, m: int, shift: float = 0.0, seed: int = 0) -> LinearSystem:
        return cls.generate("laplace2d", m, seed=seed, shift=shift)

    @classmethod
    def generate(cls, generator: str, m: int, seed: int = 0, **params: Any) -> LinearSystem:
        """A PDE system the worker builds from a few numbers (``tasks.solvers.generators``):
        ``laplace2d``, ``laplace3d``, ``anisotropic2d`` (``eps``), ``variable_diffusion2d``
        (``contrast``, ``blocks``, ``coeff_seed``), ``heat2d`` (``dt``, ``kappa``); each takes
        ``shift`` (absolute) or ``rel_shift`` (times the smallest eigenvalue: > -1 stays
        positive definite at any size); ``seed`` draws the right-hand side."""
        self = cls.__new__(cls)
        self._spec = validate_generator({"generator": generator, "m": m, "seed": seed, **params})
        self.n = m ** generators.DIMS.get(generator, 2)
        return self

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LinearSystem:
        if "generator" in spec:
            self = cls.__new__(cls)
            self._spec = validate_generator(spec)
            self.n = int(self._spec["m"]) ** generators.DIMS.get(self._spec["generator"], 2)
            return self
        A, b = build_system(spec)
        return cls(A, b)

    def to_spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def build(self) -> tuple[sp.csr_matrix, np.ndarray]:
        return build_system(self._spec)

    def __repr__(self) -> str:
        kind = self._spec.get("generator", "csr")
        return f"LinearSystem({kind}, n={self.n})"
