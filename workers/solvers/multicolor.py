"""Multicolour SOR: rows split into colours with no coupling inside a colour (red-black on
5- and 7-point grids, greedy for any CSR), each colour updated at once by one SpMV over its
rows. The parallel path for GPUs: torch CSR on the worker's device (CUDA when present, else
the CPU, where the same code runs in the tests). float64 by default, float32 as an option.

For consistently ordered matrices (the 5-point Laplacian) red-black SOR has the same
asymptotic rate as natural SOR for every omega (Young), so an omega learnt under one ordering
transfers; the first iterations differ.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from tasks.solvers.csr import PreparedMatrix
from workers.solvers import kernels
from workers.solvers.sor import SolveResult, _check, finish, stopped

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def colors(P: PreparedMatrix) -> np.ndarray:
    """Per row its colour (cached on ``P``): greedy over the symmetrized pattern, so rows of
    one colour never couple in either direction."""
    if "colors" not in P.extra:
        A = P.scipy()
        pattern = (abs(A) + abs(A.T)).tocsr()
        pattern.sort_indices()
        P.extra["colors"] = kernels.greedy_coloring(
            pattern.indptr.astype(np.int32), pattern.indices.astype(np.int32)
        )
    return P.extra["colors"]  # type: ignore[no-any-return]


def _torch_csr(A: sp.csr_matrix, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr.astype(np.int64)),
            torch.from_numpy(A.indices.astype(np.int64)),
            torch.from_numpy(A.data).to(dtype),
            size=A.shape,
            check_invariants=False,  # built from a checked scipy CSR
        ).to(device)


def _structure(P: PreparedMatrix, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The matrix permuted so that each colour's rows are one contiguous block, its row
    blocks and the inverse diagonal, on ``device`` (cached per device and dtype on ``P``).
    Updating a colour is then one SpMV over a row slice, with no gather or scatter."""
    key = f"mc:{device}:{dtype}"
    if key not in P.extra:
        col = colors(P)
        perm = np.argsort(col, kind="stable")
        bounds = np.searchsorted(col[perm], np.arange(int(col.max()) + 2))
        Ap = P.scipy()[perm][:, perm].tocsr()
        Ap.sort_indices()
        blocks = [
            (int(lo), int(hi), _torch_csr(Ap[lo:hi].tocsr(), device, dtype))
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            if hi > lo
        ]
        inv_d = torch.from_numpy(1.0 / P.diag[perm]).to(device=device, dtype=dtype)
        value = {
            "A": _torch_csr(Ap, device, dtype),
            "blocks": blocks,
            "inv_d": inv_d,
            "perm": torch.from_numpy(perm).to(device),
        }
        P.extra[key] = _Held(value)
    return P.extra[key].value  # type: ignore[no-any-return]


class _Held:
    """Device structures kept on ``P.extra`` with their host-side size for the cache."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value
        A = value["A"]
        self.nbytes = int(sum(t.numel() * t.element_size() for t in (A.values(), A.col_indices())))
        self.nbytes *= 2  # the colour blocks hold the same entries again


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def multicolor_sor(
    P: PreparedMatrix,
    b: np.ndarray,
    omega: float,
    tol: float,
    max_iters: int,
    x0: np.ndarray | None = None,
    device: torch.device | None = None,
    dtype: str = "float64",
) -> SolveResult:
    _check(omega, tol, max_iters)
    dev = device or pick_device()
    tdt = DTYPES[dtype]
    S = _structure(P, dev, tdt)
    perm = S["perm"]
    bt = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64)).to(device=dev, dtype=tdt)
    bt = bt[perm]
    x = (
        torch.zeros_like(bt)
        if x0 is None
        else torch.from_numpy(np.asarray(x0, np.float64)).to(device=dev, dtype=tdt)[perm]
    )
    A, inv_d = S["A"], S["inv_d"] * omega
    r0 = float(torch.linalg.vector_norm(bt - A @ x))
    t0 = time.perf_counter()
    if r0 == 0.0:
        return SolveResult(_unpermute(x, perm), 0, True, 0.0, False, dev.type, 0.0, None)
    rel, k = 1.0, 0
    while k < max_iters:
        for lo, hi, Ac in S["blocks"]:
            x[lo:hi] += inv_d[lo:hi] * (bt[lo:hi] - Ac @ x)
        k += 1
        rel = float(torch.linalg.vector_norm(bt - A @ x)) / r0
        if stopped(rel, tol):
            break
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out = finish(_unpermute(x, perm), k, rel, tol, dev.type, t0)
    out.metrics["colors"] = len(S["blocks"])
    return out


def _unpermute(x: torch.Tensor, perm: torch.Tensor) -> np.ndarray:
    out = torch.empty_like(x)
    out[perm] = x
    return out.double().cpu().numpy()
