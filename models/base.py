"""Declarative base, naming convention and portable column types."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names keep Alembic autogenerate (and `alembic check`) stable.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON on SQLite, JSONB on PostgreSQL (indexable, queryable with ->> in plain SQL).
JSONType = JSON().with_variant(JSONB(), "postgresql")


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def json_value(value: Any) -> Any:
    """A JSON column's value as read back: decoded when the driver hands back text (SQLite,
    or a view's column), as is when it already decoded it (psycopg's JSONB)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def json_dumps(value: Any) -> str:
    """Strict JSON for every JSON column: NaN and +-Infinity (which PostgreSQL's JSONB
    refuses and SQLite accepts) become null, so both backends store the same document.
    Values that must round-trip non-finite floats exactly (policy state) tag them first."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(finite_json(value), allow_nan=False)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {dict[str, Any]: JSONType, list[Any]: JSONType}
