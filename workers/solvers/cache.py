"""A per-process cache of prepared matrices, bounded in bytes, least recently used first out.

A sequence of trials on one matrix (a campaign over omega, a time-stepping simulation) builds,
checks and converts it once per worker process; colourings and device copies hang on the same
entry. Not thread-safe: one per process (trials run one at a time per pool process).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tasks.solvers.csr import PreparedMatrix

DEFAULT_BYTES = 1 << 30


class MatrixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[PreparedMatrix, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(P.nbytes + getattr(b, "nbytes", 0) for P, b in self._items.values())

    def get(
        self, key: str, build: Callable[[], tuple[PreparedMatrix, Any]]
    ) -> tuple[PreparedMatrix, Any, bool]:
        """(matrix, companion such as the right-hand side, whether it was cached)."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return item[0], item[1], True
        self.misses += 1
        item = build()
        self._items[key] = item
        self.trim()
        return item[0], item[1], False

    def trim(self) -> None:
        """Evict the least recently used entries until the cache fits (the newest stays
        even when it alone is larger: it is in use)."""
        while len(self._items) > 1 and self.nbytes > self.max_bytes:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


_CACHE: tuple[int, MatrixCache] | None = None
_BOUND: int | None = None


def configure_process_cache(max_bytes: int) -> None:
    """The bound of this process's cache, from the worker's settings (the worker context
    calls it at start; an existing cache is trimmed to it)."""
    global _BOUND
    _BOUND = int(max_bytes)
    if _CACHE is not None and _CACHE[0] == os.getpid():
        _CACHE[1].max_bytes = _BOUND
        _CACHE[1].trim()


def process_cache() -> MatrixCache:
    """This process's cache (a forked pool child gets its own); the bound is the configured
    one (:func:`configure_process_cache`), else ``BANDITQ_KERNEL_CACHE_BYTES`` (default
    1 GiB)."""
    global _CACHE
    if _CACHE is None or _CACHE[0] != os.getpid():
        limit = _BOUND
        if limit is None:
            raw = os.environ.get("BANDITQ_KERNEL_CACHE_BYTES", "")
            limit = int(raw) if raw.strip().isdigit() else DEFAULT_BYTES
        _CACHE = (os.getpid(), MatrixCache(limit))
    return _CACHE[1]
