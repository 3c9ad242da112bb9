"""A worker host's cache of blobs by hash: files under a directory, bounded in bytes, least
recently used evicted first. Shared by the host's worker processes (atomic renames; a file
is only ever replaced by the same bytes). Every read checks the hash; a corrupt or vanished
file (even the whole directory) is simply fetched again."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tasks.store.blobs import HASH_RE, digest


class HostCache:
    def __init__(self, root: Path | str, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.fetches = 0
        self.hits = 0
        #: bytes believed on disk (listed once, then counted): eviction lists the folder
        #: only when this passes the bound, not on every write
        self._size: int | None = None

    def get(self, sha256: str, fetch: Callable[[], bytes]) -> bytes:
        if not HASH_RE.match(sha256):
            raise ValueError(f"not a sha256 hash: {sha256!r}")
        path = self.root / sha256
        try:
            data = path.read_bytes()
            if digest(data) == sha256:
                self.hits += 1
                os.utime(path)  # most recently used
                return data
        except OSError:
            pass
        data = fetch()
        self.fetches += 1
        if len(data) <= self.max_bytes:
            self._keep(sha256, data)
        return data

    def _keep(self, sha256: str, data: bytes) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        except OSError:
            return  # a cache that cannot write only costs fetches
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.root / sha256)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        if self._size is None:
            self._evict()
        else:
            self._size += len(data)
            if self._size > self.max_bytes:
                self._evict()

    def _evict(self) -> None:
        """Delete the least recently used files until the folder fits (other processes of
        the host write here too, so the folder, not the count, is the truth)."""
        try:
            files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.root.iterdir()]
        except OSError:
            return
        files = [f for f in files if HASH_RE.match(f[2].name)]
        total = sum(size for _t, size, _p in files)
        # down to 90% of the bound, so the next writes do not list the folder again at once
        for _t, size, p in sorted(files):
            if total <= 0.9 * self.max_bytes:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                total -= size
        self._size = total
