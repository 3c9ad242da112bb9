"""Crafted systems against the worker (issue 27, item 5): sizes that lie, CSR blobs whose
indices or ``indptr`` point outside the arrays, references whose declared shape is not the
blob's. Each must be a failed trial naming the field, never a crash: the trials run in a
subprocess, so a segfault fails the test instead of ending the test run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    r"""
    import json, struct, sys, uuid
    import numpy as np
    import scipy.sparse as sp
    from app.config import Settings
    from tasks.solvers.generators import build_matrix
    from tasks.store import open as store_open
    from tasks.store.blobs import CSR_MAGIC, csr_ref, digest, vector_ref
    from workers.run_trial import execute

    from pathlib import Path
    store_open.configure(Settings(home=Path(sys.argv[1])))
    store = store_open.current()[0]

    def put_raw(kind, data, shape):
        store.put(data)
        return {"sha256": digest(data), "kind": kind, "shape": shape, "nbytes": len(data)}

    def put(kind, value):
        ref, data = vector_ref(value) if kind == "vector" else csr_ref(value)
        store.put(data)
        return ref

    n = 64
    A = build_matrix({"generator": "laplace2d", "m": 8, "shift": 0.0})
    good_A, good_b = put("csr", A), put("vector", np.ones(n))
    long_x0 = put("vector", np.ones(4 * n))
    short_b = put("vector", np.ones(n // 2))

    def csr_blob(n_, indptr, indices, data):
        return b"".join((CSR_MAGIC, struct.pack("<qq", n_, len(indices)),
                         np.asarray(indptr, "<i8").tobytes(), np.asarray(indices, "<i4").tobytes(),
                         np.asarray(data, "<f8").tobytes()))

    def stored(blob):
        return {"system": {"stored": {"A": put_raw("csr", blob, [n, n]), "b": good_b}}}

    csr = sp.csr_matrix(A)
    bad_index = csr.indices.copy(); bad_index[5] = 10**6
    bad_ptr = csr.indptr.copy(); bad_ptr[3] = bad_ptr[2] - 1
    cases = {
        "x0 longer than n (shape declared n)": (
            {"system": {"stored": {"A": good_A, "b": good_b}},
             "x0": {**long_x0, "shape": [n]}}, "shape"),
        "b shorter than n (shape declared n)": (
            {"system": {"stored": {"A": good_A, "b": {**short_b, "shape": [n]}}}}, "shape"),
        "column index past n": (
            stored(csr_blob(n, csr.indptr, bad_index, csr.data)), "column indices"),
        "decreasing indptr": (
            stored(csr_blob(n, bad_ptr, csr.indices, csr.data)), "indptr"),
        "header larger than the blob": (
            stored(csr_blob(10**9, csr.indptr, csr.indices, csr.data)), "header"),
        "matrix declared smaller than it is": (
            {"system": {"stored": {"A": {**good_A, "shape": [16, 16]},
                                   "b": put("vector", np.ones(16))}}}, "16"),
    }
    out = {}
    for name, (spec, expect) in cases.items():
        spec = {"tol": 1e-8, "max_iters": 200, **spec}
        for kind in ("sor", "ssor-pcg"):
            payload = {"v": 1, "trial": str(uuid.uuid4()), "attempt": 1, "campaign": "c",
                       "kind": kind, "spec": spec, "arm": {"omega": 1.5}, "limits": {}}
            r = execute(payload, "w")
            out[f"{kind}: {name}"] = [r["status"], r.get("error") or "", expect]
    print(json.dumps(out))
    """
)


def test_crafted_systems_fail_their_trials_and_never_crash_the_worker(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, (
        f"worker process died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 12
    for name, (status, error, expect) in results.items():
        assert status == "failed", name
        assert expect in error, f"{name}: {error[:300]}"
