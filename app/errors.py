"""The errors of banditq's public contract, importable from here (``app.errors.InputError``)
as well as from ``app``. They are defined in :mod:`tasks.errors`, the ground layer every side
(client, scheduler, worker) shares."""

from tasks.errors import (
    BanditqError,
    ConfigError,
    InputError,
    NotFoundError,
    SchemaMissingError,
    StoreError,
    bounded,
    bounded_int,
    finite_number,
)

__all__ = [
    "BanditqError",
    "ConfigError",
    "InputError",
    "NotFoundError",
    "SchemaMissingError",
    "StoreError",
    "bounded",
    "bounded_int",
    "finite_number",
]
