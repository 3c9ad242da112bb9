"""Blobs in PostgreSQL: ``store_blobs`` (hash, size, time) and ``store_chunks`` (``bytea``
chunks), written in one transaction, and tags in ``store_tags``, so a deployment of
PostgreSQL and RabbitMQ needs nothing more. Tables come from the migrations."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from tasks.store.base import ArrayStore, BlobInfo

CHUNK = 8 << 20  # bytes per row: large values stay well below PostgreSQL's 1 GB field limit


class PostgresStore(ArrayStore):
    def __init__(self, engine: Engine, location: str = "") -> None:
        self.engine = engine
        self.location = location or engine.url.render_as_string(hide_password=True)

    def _write(self, sha256: str, data: bytes) -> None:
        with self.engine.begin() as c:
            new = c.execute(
                text(
                    "INSERT INTO store_blobs (sha256, nbytes, created_at) "
                    "VALUES (:h, :n, now()) ON CONFLICT DO NOTHING RETURNING sha256"
                ),
                {"h": sha256, "n": len(data)},
            ).first()
            if new is None:
                return  # another writer stored the same bytes
            rows: list[dict[str, Any]] = [
                {"h": sha256, "s": i, "d": data[o : o + CHUNK]}
                for i, o in enumerate(range(0, max(len(data), 1), CHUNK))
            ]
            c.execute(
                text("INSERT INTO store_chunks (sha256, seq, data) VALUES (:h, :s, :d)"), rows
            )

    def _read(self, sha256: str) -> bytes | None:
        with self.engine.connect() as c:
            rows = c.execute(
                text("SELECT data FROM store_chunks WHERE sha256 = :h ORDER BY seq"),
                {"h": sha256},
            ).all()
            if (
                not rows
                and c.execute(
                    text("SELECT 1 FROM store_blobs WHERE sha256 = :h"), {"h": sha256}
                ).first()
                is None
            ):
                return None
        return b"".join(bytes(r[0]) for r in rows)

    def exists(self, sha256: str) -> bool:
        with self.engine.connect() as c:
            row = c.execute(text("SELECT 1 FROM store_blobs WHERE sha256 = :h"), {"h": sha256})
            return row.first() is not None

    def blobs(self) -> list[BlobInfo]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT sha256, nbytes, created_at FROM store_blobs")).all()
        return [BlobInfo(r[0], int(r[1]), r[2]) for r in rows]

    def delete(self, hashes: list[str], before: datetime | None = None) -> int:
        if not hashes:
            return 0
        with self.engine.begin() as c:
            # The blob rows first (locked): a concurrent put's touch either ran before (the
            # row is young and stays) or waits and then finds nothing (it writes anew).
            res = c.execute(
                text(
                    "DELETE FROM store_blobs WHERE sha256 = ANY(:h) "
                    "AND (CAST(:t AS timestamptz) IS NULL OR created_at < :t) RETURNING sha256"
                ),
                {"h": hashes, "t": before},
            )
            gone = [r[0] for r in res]
            if gone:
                c.execute(text("DELETE FROM store_chunks WHERE sha256 = ANY(:h)"), {"h": gone})
        return len(gone)

    def touch(self, sha256: str) -> bool:
        with self.engine.begin() as c:
            row = c.execute(
                text("UPDATE store_blobs SET created_at = now() WHERE sha256 = :h RETURNING 1"),
                {"h": sha256},
            ).first()
        return row is not None

    def set_tag(self, name: str, value: dict[str, Any]) -> None:
        with self.engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO store_tags (name, value, sha256, created_at) "
                    "VALUES (:n, :v, :h, now()) ON CONFLICT (name) DO UPDATE SET "
                    "value = EXCLUDED.value, sha256 = EXCLUDED.sha256, created_at = now()"
                ),
                {"n": name, "v": json.dumps(value), "h": value.get("sha256")},
            )

    def set_error_tag(self, name: str, value: dict[str, Any]) -> bool:
        with self.engine.begin() as c:
            row = c.execute(
                text(
                    "INSERT INTO store_tags (name, value, sha256, created_at) "
                    "VALUES (:n, :v, NULL, now()) ON CONFLICT (name) DO UPDATE SET "
                    "value = EXCLUDED.value, created_at = now() "
                    "WHERE store_tags.sha256 IS NULL RETURNING 1"
                ),
                {"n": name, "v": json.dumps(value)},
            ).first()
        return row is not None

    def get_tag(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(
                text("SELECT value FROM store_tags WHERE name = :n"), {"n": name}
            ).first()
        return None if row is None else dict(json.loads(row[0]))

    def drop_tags(self, hashes: Collection[str], before: datetime) -> int:
        with self.engine.begin() as c:
            res = c.execute(
                text(
                    "DELETE FROM store_tags WHERE sha256 = ANY(:h) "
                    "OR (sha256 IS NULL AND created_at < :t)"
                ),
                {"h": list(hashes), "t": before},
            )
        return int(res.rowcount or 0)

    def close(self) -> None:
        self.engine.dispose()
