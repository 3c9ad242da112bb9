"""Canonical binary encodings of arrays and their references.

A vector is a ``.npy`` file (format 1.0, little-endian float64); a CSR matrix is a fixed
header (magic, n, nnz) followed by indptr (int64), indices (int32) and data (float64), all
little-endian, with sorted, duplicate-free columns: the same matrix always encodes to the same
bytes, so its hash names it.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from typing import Any

import numpy as np
import scipy.sparse as sp

CSR_MAGIC = b"BQCSR\x01\x00\x00"
HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z")
KINDS = ("vector", "csr")


class BlobError(Exception):
    """A blob is missing, corrupt or malformed (the message says which and what to do)."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_vector(x: Any) -> bytes:
    arr = np.ascontiguousarray(np.asarray(x, dtype="<f8").ravel())
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def encode_csr(A: Any) -> bytes:
    csr = sp.csr_matrix(A, dtype=np.float64)
    csr.sum_duplicates()
    csr.sort_indices()
    n = csr.shape[0]
    if csr.shape[1] != n:
        raise ValueError(f"a stored matrix must be square, got {csr.shape}")
    return b"".join(
        (
            CSR_MAGIC,
            struct.pack("<qq", n, csr.nnz),
            np.asarray(csr.indptr, dtype="<i8").tobytes(),
            np.asarray(csr.indices, dtype="<i4").tobytes(),
            np.asarray(csr.data, dtype="<f8").tobytes(),
        )
    )


def decode(kind: str, data: bytes) -> Any:
    """The array (vector) or scipy CSR matrix (int32 indices) of an encoded blob."""
    try:
        if kind == "vector":
            return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        if kind == "csr":
            if data[:8] != CSR_MAGIC:
                raise ValueError("not a CSR blob")
            n, nnz = struct.unpack("<qq", data[8:24])
            # sizes checked before anything is read: the kernels index without bounds checks
            if (
                not 0 < n < 2**31
                or not 0 <= nnz < 2**31
                or 24 + 8 * (n + 1) + 12 * nnz != len(data)
            ):
                raise ValueError(f"header n={n}, nnz={nnz} does not match {len(data)} bytes")
            o = 24
            indptr = np.frombuffer(data, "<i8", n + 1, o)
            o += 8 * (n + 1)
            indices = np.frombuffer(data, "<i4", nnz, o)
            o += 4 * nnz
            values = np.frombuffer(data, "<f8", nnz, o)
            if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
                raise ValueError("indptr must start at 0, end at nnz and never decrease")
            if nnz and (int(indices.min()) < 0 or int(indices.max()) >= n):
                raise ValueError(f"column indices must be in 0..{n - 1}")
            A = sp.csr_matrix(
                (values.copy(), indices.copy(), indptr.astype(np.int32)), shape=(n, n)
            )
            A.has_sorted_indices = True
            return A
    except (ValueError, struct.error) as exc:
        raise BlobError(f"malformed {kind} blob: {exc}") from exc
    raise BlobError(f"unknown blob kind {kind!r}")


def ref(kind: str, data: bytes, shape: list[int]) -> dict[str, Any]:
    """What messages and rows carry instead of the array."""
    return {"sha256": digest(data), "kind": kind, "shape": shape, "nbytes": len(data)}


def is_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("sha256"), str)
        and HASH_RE.match(value["sha256"]) is not None
        and value.get("kind") in KINDS
    )


def vector_ref(x: Any) -> tuple[dict[str, Any], bytes]:
    data = encode_vector(x)
    return ref("vector", data, [int(np.asarray(x).size)]), data


def csr_ref(A: Any) -> tuple[dict[str, Any], bytes]:
    data = encode_csr(A)
    n = int(A.shape[0])
    return ref("csr", data, [n, n]), data


def refs_in(value: Any) -> list[dict[str, Any]]:
    """Every blob reference inside a JSON value (a spec, a result's outputs)."""
    if is_ref(value):
        return [value]
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list) and value and isinstance(value[0], dict | list):
        return [r for v in value for r in refs_in(v)]
    return []
