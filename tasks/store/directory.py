"""Blobs as files under a directory: ``<root>/<2 hex>/<sha256>``.

A write goes to a temporary file in ``<root>/tmp`` (same filesystem), is flushed to disk and
renamed into place, so a crash or a full disk never leaves a half blob under a valid name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.store.base import ArrayStore, BlobInfo
from tasks.store.blobs import HASH_RE, BlobError

#: blobs and tags: the owner writes, the store's group reads (workers under another user)
FILE_MODE = 0o640


class DirectoryStore(ArrayStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, sha256: str) -> Path:
        if not HASH_RE.match(sha256):
            raise BlobError(f"not a sha256 hash: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def _write(self, sha256: str, data: bytes) -> None:
        final = self._path(sha256)
        tmp_dir = self.root / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=sha256[:12])
        except OSError as exc:
            raise BlobError(f"cannot write to the store at {self.root}: {exc}") from exc
        try:
            os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600: the store's group must read it
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise BlobError(f"cannot write to the store at {self.root}: {exc}") from exc

    def _read(self, sha256: str) -> bytes | None:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def blobs(self) -> list[BlobInfo]:
        out: list[BlobInfo] = []
        if not self.root.is_dir():
            return out
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sub.iterdir():
                if HASH_RE.match(f.name):
                    st = f.stat()
                    out.append(
                        BlobInfo(f.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                    )
        return out

    def _tag_path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.root / "tags" / f"{safe}.json"

    def set_tag(self, name: str, value: dict[str, Any]) -> None:
        final = self._tag_path(name)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "w") as f:
                json.dump(value, f)
            os.replace(tmp, final)
        except OSError as exc:
            raise BlobError(f"cannot write to the store at {self.root}: {exc}") from exc

    def get_tag(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._tag_path(name).read_text()))
        except FileNotFoundError:
            return None

    def drop_tags(self, hashes: Collection[str], before: datetime) -> int:
        doomed, n = set(hashes), 0
        folder = self.root / "tags"
        if not folder.is_dir():
            return 0
        for f in folder.glob("*.json"):
            try:
                value = json.loads(f.read_text())
                at = datetime.fromtimestamp(f.stat().st_mtime, UTC)
            except (OSError, ValueError):
                continue
            sha = value.get("sha256") if isinstance(value, dict) else None
            if (sha is not None and sha in doomed) or (sha is None and at < before):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    n += 1
        return n

    def delete(self, hashes: list[str], before: datetime | None = None) -> int:
        n = 0
        for h in hashes:
            path = self._path(h)
            with contextlib.suppress(FileNotFoundError):
                if before is not None and path.stat().st_mtime >= before.timestamp():
                    continue  # re-put since gc listed it
                path.unlink()
                n += 1
        return n

    def touch(self, sha256: str) -> bool:
        try:
            os.utime(self._path(sha256))
        except (FileNotFoundError, NotADirectoryError):
            return False  # absent (a store folder that cannot hold it fails in _write)
        except OSError as exc:
            raise BlobError(f"cannot write to the store at {self.root}: {exc}") from exc
        return True
