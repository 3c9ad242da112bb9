"""Linear systems as wire specs: CSR arrays plus right-hand side, or a generator spec.

Validation lives here so that the client (at submit time) and the worker (on what arrives over
the wire) apply the same rules and name the same fields.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from tasks import chain, gridfield
from tasks.errors import InputError, finite_number
from tasks.gridfield import GridField
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


def validate_stored(spec: dict[str, Any], field: str = "system") -> dict[str, Any]:
    """A stored system ``{"stored": {"A": ref, "b": ref, "alpha": a, "beta": b}}``: checks
    the references and the diagonal of alpha * I + beta * A (from A's reference), without
    fetching anything."""
    from tasks.store.blobs import is_ref

    st = spec.get("stored")
    if not isinstance(st, dict) or set(spec) != {"stored"}:
        raise InputError(field, "a stored system is {'stored': {'A', 'b', 'alpha', 'beta'}}")
    A: Any = st.get("A")
    b: Any = st.get("b")
    if not is_ref(A) or A["kind"] != "csr":
        raise InputError(f"{field}.A", "must be a reference to a stored CSR matrix")
    n = int(A["shape"][0])
    if chain.is_chained(b):
        b = chain.validate(b, n, f"{field}.b", has_matrix=True)
    elif gridfield.is_field(b):
        b = gridfield.validate(b, n, f"{field}.b")
    elif not is_ref(b) or b["kind"] != "vector" or list(b["shape"]) != [n]:
        raise InputError(
            f"{field}.b",
            f"must be a reference to a stored vector of length {n}, SolutionOf(...) or a GridField",
        )
    out = {"A": A, "b": b}
    for key, default in (("alpha", 0.0), ("beta", 1.0)):
        out[key] = finite_number(st.get(key, default), f"{field}.{key}")
    if "diag_min" in A:
        dmin, dmax = float(A["diag_min"]), float(A["diag_max"])
        lo = out["alpha"] + out["beta"] * (dmin if out["beta"] >= 0 else dmax)
        if not lo > 0:
            raise InputError(
                f"{field}.alpha", f"alpha + beta * diagonal must be positive ({lo:.4g})"
            )
    return {"stored": out}


def system_size(system: Any) -> int | None:
    """The number of unknowns of a validated wire system (None when it cannot say)."""
    if not isinstance(system, dict):
        return None
    if "stored" in system:
        return int(system["stored"]["A"]["shape"][0])
    if "generator" in system:
        return int(system["m"]) ** generators.DIMS.get(system["generator"], 2)
    n = system.get("n")
    return int(n) if isinstance(n, int) else None


def spec_key(system: dict[str, Any]) -> str:
    """A stable key for a system spec: how a worker process caches the prepared matrix of a
    system that is not stored, and how a client tells that it sent the same system before.

    The sha256 of a canonical form: mappings by sorted key, a list of numbers as its
    array's dtype, shape and bytes (an inline system's arrays are hashed, not written out
    as text: that cost grows with the system and is paid on every trial), anything else as
    JSON. Equal specs have equal keys; a list of ints and the same values as floats differ."""
    h = hashlib.sha256()
    _canonical(h, system)
    return h.hexdigest()


def _canonical(h: Any, value: Any) -> None:
    if isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=str):
            h.update(json.dumps(str(k)).encode() + b":")
            _canonical(h, value[k])
        h.update(b"}")
        return
    if isinstance(value, list | tuple) and value:
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged
            arr = None
        if arr is not None and arr.dtype.kind in "iuf":
            head = f"<{arr.dtype.str}{arr.shape}>".encode()
            h.update(head + np.ascontiguousarray(arr).tobytes())
            return
        h.update(b"[")
        for v in value:
            _canonical(h, v)
            h.update(b",")
        h.update(b"]")
        return
    h.update(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def stored_bytes(spec: dict[str, Any]) -> int:
    """Bytes of the stored arrays a spec refers to (0 for inline and generator systems)."""
    st = spec.get("stored") if isinstance(spec, dict) else None
    if not isinstance(st, dict):
        return 0
    b: Any = st.get("b")
    if chain.is_chained(b):
        b = b.get("plus")
    return sum(int(r.get("nbytes", 0)) for r in (st.get("A"), b) if isinstance(r, dict))


def vector(value: dict[str, Any]) -> np.ndarray:
    """A validated vector value of a stored system: a reference fetched through this worker
    host's cache (checked against its hash), or a grid field evaluated here. Contiguous
    float64."""
    from tasks.store.open import fetch

    if gridfield.is_field(value):
        return gridfield.evaluate(value)
    return np.ascontiguousarray(fetch(value), dtype=np.float64)


def build_stored(spec: dict[str, Any]) -> tuple[sp.csr_matrix, np.ndarray]:
    """(alpha * I + beta * A, b) of a stored system, fetched through this worker host's
    cache (each blob once per host) and checked against its hash (``BlobError`` if missing
    or corrupt)."""
    from tasks.store.open import fetch

    st = validate_stored(spec)["stored"]
    if chain.is_chained(st["b"]):
        raise InputError("system.b", "a chained right-hand side is built by the solver kinds")
    A, b = fetch(st["A"]), vector(st["b"])
    if st["beta"] != 1.0:
        A.data *= st["beta"]
    if st["alpha"] != 0.0:
        A = (A + st["alpha"] * sp.identity(A.shape[0], format="csr")).tocsr()
        A.indices = A.indices.astype(np.int32)
        A.indptr = A.indptr.astype(np.int32)
    return A, np.asarray(b, dtype=np.float64)


def build_system(spec: dict[str, Any], field: str = "system") -> tuple[sp.csr_matrix, np.ndarray]:
    """(A, b) from a validated or untrusted wire spec."""
    if not isinstance(spec, dict):
        raise InputError(field, "must be an object")
    if "generator" in spec:
        return generators.build(validate_generator(spec, field))
    if "stored" in spec:
        return build_stored(spec)
    return validate_csr(
        spec.get("n"),
        spec.get("indptr"),
        spec.get("indices"),
        spec.get("data"),
        spec.get("b"),
        field,
    )


def _matrix(A: Any, field: str = "system.A") -> sp.csr_matrix:
    if sp.issparse(A):
        mat = sp.csr_matrix(A)
    else:
        arr = np.asarray(A)
        if arr.dtype == object or arr.dtype.kind in "cSUVO":
            raise InputError(field, f"must be real, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise InputError(field, f"must be 2-D, got shape {arr.shape}")
        mat = sp.csr_matrix(arr)
    if mat.dtype.kind == "c":
        raise InputError(field, "must be real, got a complex matrix")
    rows, cols = mat.shape
    if rows != cols or rows == 0:
        raise InputError(field, f"must be square and non-empty, got shape {mat.shape}")
    return mat


class StoredMatrix:
    """A matrix in the array store, by reference (``Client.store_matrix``): uploaded once,
    usable by any number of systems, including ``alpha * I + beta * A`` forms. Carries what
    submit-time checks need (size, diagonal range, symmetry) so they need not fetch it."""

    def __init__(self, ref: dict[str, Any]) -> None:
        self.ref = ref
        self.n = int(ref["shape"][0])

    @staticmethod
    def describe(A: sp.csr_matrix) -> dict[str, Any]:
        d = A.diagonal()
        asym = abs(A - A.T)
        scale = float(np.abs(A.data).max()) if A.nnz else 1.0
        return {
            "nnz": int(A.nnz),
            "diag_min": float(d.min()),
            "diag_max": float(d.max()),
            "symmetric": bool(asym.nnz == 0 or float(asym.max()) <= 1e-12 * scale),
        }

    def __repr__(self) -> str:
        return f"StoredMatrix({self.ref['sha256'][:12]}..., n={self.n})"


Put = Callable[[str, Any], dict[str, Any]]


class LinearSystem:
    """A system ``A x = b`` to be solved by a worker.

    ``LinearSystem(A, b)`` takes a scipy sparse matrix or a dense 2-D array and a 1-D right-hand
    side: a small one travels inside the message, a large one (over ``BANDITQ_INLINE_BYTES``)
    goes to the array store at submit time and the message carries references.
    ``LinearSystem.affine(A, b, alpha, beta)`` is ``alpha * I + beta * A`` of a stored matrix
    (a time step changes two numbers, not the matrix); its ``b`` may be a
    :class:`tasks.chain.SolutionOf`, computed on the worker from an earlier solution.
    ``LinearSystem.generate(...)`` is a spec the worker expands locally. Validation happens
    here, at construction.
    """

    _spec: dict[str, Any]
    _A: sp.csr_matrix | StoredMatrix | None
    _b: np.ndarray | chain.SolutionOf | GridField | None

    def __init__(self, A: Any, b: Any) -> None:
        mat = _matrix(A)
        rows = mat.shape[0]
        A_ok, b_ok = validate_csr(
            rows, mat.indptr, mat.indices, mat.data, b if b is not None else [], "system"
        )
        self._A, self._b, self._spec = A_ok, b_ok, {}
        self._alpha, self._beta = 0.0, 1.0
        self.n = rows

    @classmethod
    def affine(
        cls, A: StoredMatrix | Any, b: Any, alpha: float = 0.0, beta: float = 1.0
    ) -> LinearSystem:
        """``(alpha * I + beta * A) x = b``; ``A`` a :class:`StoredMatrix` (uploaded once) or
        a matrix (uploaded at the first submit, stored once however often it is used)."""
        alpha = finite_number(alpha, "system.alpha")
        beta = finite_number(beta, "system.beta")
        self = cls.__new__(cls)
        if isinstance(A, StoredMatrix):
            meta = A.ref
            self._A, self.n = A, A.n
        else:
            mat = _matrix(A)
            self._A, self.n = mat, mat.shape[0]
            meta = StoredMatrix.describe(mat)
        lo = alpha + beta * (meta["diag_min"] if beta >= 0 else meta["diag_max"])
        if not lo > 0:
            raise InputError(
                "system.alpha",
                f"alpha + beta * diagonal must be positive; its smallest entry is {lo:.4g}",
            )
        self._spec = {}
        if isinstance(b, chain.SolutionOf):
            self._b = b
        elif isinstance(b, GridField):
            gridfield.validate(b.to_wire(), self.n, "system.b")
            self._b = b
        else:
            rhs = np.asarray(b, dtype=np.float64).ravel()
            if rhs.size != self.n or not np.all(np.isfinite(rhs)):
                raise InputError("system.b", f"must be {self.n} finite numbers, or SolutionOf")
            self._b = rhs
        self._alpha, self._beta = float(alpha), float(beta)
        return self

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
        self._A, self._b = None, None
        self.n = m ** generators.DIMS.get(generator, 2)
        return self

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LinearSystem:
        if "generator" in spec:
            self = cls.__new__(cls)
            self._spec = validate_generator(spec)
            self._A, self._b = None, None
            self.n = int(self._spec["m"]) ** generators.DIMS.get(self._spec["generator"], 2)
            return self
        A, b = build_system(spec)
        return cls(A, b)

    def _inline_estimate(self) -> int:
        """Bytes of the inline JSON form (an estimate: ~24 B per number)."""
        if isinstance(self._A, sp.csr_matrix) and self._alpha == 0.0 and self._beta == 1.0:
            return 24 * (2 * self._A.nnz + 2 * self.n)
        return 1 << 62  # affine forms always travel by reference

    def to_spec(self, put: Put | None = None, inline_bytes: int = 64 * 1024) -> dict[str, Any]:
        """The wire spec: generator and small systems inline; larger ones stored with
        ``put(kind, array) -> ref`` (without ``put``, inline whatever the size)."""
        if self._spec:
            return dict(self._spec)
        if put is None or self._inline_estimate() <= inline_bytes:
            if not isinstance(self._A, sp.csr_matrix) or self._alpha != 0.0 or self._beta != 1.0:
                raise InputError("system", "an affine or stored system needs the array store")
            A, b = self._A, self._b
            assert isinstance(b, np.ndarray)
            return {
                "n": self.n,
                "indptr": A.indptr.tolist(),
                "indices": A.indices.tolist(),
                "data": A.data.tolist(),
                "b": b.tolist(),
            }
        if not isinstance(self._A, StoredMatrix):
            ref = put("csr", self._A)
            self._A = StoredMatrix({**ref, **StoredMatrix.describe(self._A)})
        b_spec = (
            self._b.to_wire(self.n, put, "system.b")
            if isinstance(self._b, chain.SolutionOf)
            else self._b.to_wire()
            if isinstance(self._b, GridField)
            else put("vector", self._b)
        )
        return {
            "stored": {
                "A": self._A.ref,
                "b": b_spec,
                "alpha": self._alpha,
                "beta": self._beta,
            }
        }

    def build(self) -> tuple[sp.csr_matrix, np.ndarray]:
        if self._spec:
            return build_system(self._spec)
        if isinstance(self._A, StoredMatrix):
            raise InputError("system", "a stored matrix is built on the worker")
        assert self._A is not None and self._b is not None
        if isinstance(self._b, chain.SolutionOf):
            raise InputError("system.b", "a chained right-hand side is built on the worker")
        if isinstance(self._b, GridField):
            self._b = self._b.values()
        A = self._A * self._beta
        if self._alpha:
            A = (A + self._alpha * sp.identity(self.n, format="csr")).tocsr()
        return A, self._b

    def __repr__(self) -> str:
        kind = self._spec.get("generator", "csr") if self._spec else "matrix"
        return f"LinearSystem({kind}, n={self.n})"
