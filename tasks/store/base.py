"""The store interface: put bytes under their hash, get them back checked."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.store.blobs import BlobError, digest


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    nbytes: int
    created_at: datetime


class ArrayStore(ABC):
    """Immutable, content-addressed blobs. Thread-safety: one store object per thread or
    process (backends hold connections); blobs themselves are safe to share."""

    #: where it lives, credentials masked (for errors and ``store stats``)
    location: str = ""

    @abstractmethod
    def _write(self, sha256: str, data: bytes) -> None:
        """Store ``data`` under ``sha256`` atomically (all or nothing), if not present."""

    @abstractmethod
    def _read(self, sha256: str) -> bytes | None:
        """The stored bytes, or None when there is no such blob."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def blobs(self) -> list[BlobInfo]: ...

    @abstractmethod
    def delete(self, hashes: list[str], before: datetime | None = None) -> int:
        """Remove these blobs (absent ones are ignored); with ``before``, only those still
        older than it, checked at the delete itself (a blob re-put since gc listed it is
        kept). Returns how many were removed."""

    @abstractmethod
    def touch(self, sha256: str) -> bool:
        """Refresh a stored blob's timestamp to now (a re-upload of existing content is a
        new use: gc's age rule must see it young); False when the blob is absent."""

    # Tags name a blob by something other than its hash (a chained instance's solution, by
    # instance id): mutable, small, the latest write wins. The value is a JSON object.
    @abstractmethod
    def set_tag(self, name: str, value: dict[str, Any]) -> None:
        """Point ``name`` at ``value`` (a reference, or an error), atomically."""

    def set_error_tag(self, name: str, value: dict[str, Any]) -> bool:
        """Point ``name`` at an error ``value`` unless it already names a solution (a
        stale attempt's failure never hides a good result); True when written. This
        default reads, then writes; stores that can do it atomically override it."""
        old = self.get_tag(name)
        if old is not None and old.get("sha256"):
            return False
        self.set_tag(name, value)
        return True

    @abstractmethod
    def get_tag(self, name: str) -> dict[str, Any] | None:
        """The tag's value, or None when there is no such tag."""

    @abstractmethod
    def drop_tags(self, hashes: Collection[str], before: datetime) -> int:
        """Remove tags pointing at any of ``hashes`` (blobs being deleted) and tags that
        point at no blob, written before ``before``; returns how many."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent: the same bytes are stored once); returns its hash."""
        h = digest(data)
        if not self.touch(h):
            self._write(h, data)
        return h

    def get(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its hash (``BlobError`` if missing or corrupt)."""
        data = self._read(sha256)
        if data is None:
            raise BlobError(
                f"blob {sha256[:12]}... is not in the store at {self.location}; it was never "
                "uploaded there or was garbage-collected (resubmit the instance)"
            )
        if digest(data) != sha256:
            raise BlobError(
                f"blob {sha256[:12]}... in the store at {self.location} is corrupt: its bytes "
                "do not match its hash (refused; re-upload it or restore the store)"
            )
        return data

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
