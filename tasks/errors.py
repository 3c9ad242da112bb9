"""Errors that name the bad field and what is allowed."""

from __future__ import annotations

import math
from typing import Any


class BanditqError(Exception):
    """Base of banditq's own errors."""


class InputError(BanditqError, ValueError):
    """Bad user input. ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def finite_number(value: object, field: str) -> float:
    """``value`` as a float, or ``InputError`` naming ``field`` (booleans, non-numbers,
    NaN and infinities are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(field, f"must be a finite number, got {value!r}")
    return float(value)


class NotFoundError(BanditqError, LookupError):
    """A campaign (or other named object) does not exist."""


class SchemaMissingError(BanditqError, RuntimeError):
    """The database has no banditq tables yet."""


class ConfigError(BanditqError, ValueError):
    """A malformed ``BANDITQ_*`` environment variable."""


class StoreError(BanditqError, OSError):
    """The array store cannot take or give a blob (unwritable, full, unreachable)."""


def bounded(value: Any, field: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
    """``value`` as a float in [lo, hi] ((lo, hi] with ``open_lo``), or InputError."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (lo < value if open_lo else lo <= value)
        and value <= hi
    )
    if not ok:
        lo_br = "(" if open_lo else "["
        raise InputError(field, f"must be a number in {lo_br}{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def bounded_int(value: Any, field: str, lo: int, hi: int) -> int:
    """``value`` as an integer in lo..hi (not a bool), or InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(field, f"must be an integer in {lo}..{hi}, got {value!r}")
    return value
