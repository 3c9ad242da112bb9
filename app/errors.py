"""Errors that name the bad field and what is allowed."""

from __future__ import annotations

import math


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
