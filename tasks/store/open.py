"""Which store a process uses (``BANDITQ_STORE_URL``) and this process's handle on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from tasks.store.base import ArrayStore


class Settings(Protocol):
    """What the store needs of a process's settings (``app.config.Settings`` has it)."""

    @property
    def store_url(self) -> str: ...
    @property
    def database_url(self) -> str: ...
    @property
    def home(self) -> Path: ...
    @property
    def worker_cache_bytes(self) -> int: ...


def store_location(settings: Settings) -> str:
    """``BANDITQ_STORE_URL``; by default the database when it is PostgreSQL, else a
    directory under ``BANDITQ_HOME``."""
    if settings.store_url:
        return settings.store_url
    if settings.database_url.startswith("postgresql"):
        return settings.database_url
    return f"file://{settings.home / 'store'}"


def open_store(settings: Settings) -> ArrayStore:
    url = store_location(settings)
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine

        from tasks.store.postgres import PostgresStore

        kwargs: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
        if url == settings.database_url:
            # Blob writes need not wait for the WAL flush: whatever refers to a blob (an
            # instance, a result) commits durably later on the same server, and a durable
            # commit flushes the WAL up to it, so a crash never keeps a reference to a lost
            # blob. A store on another server keeps durable commits.
            kwargs["connect_args"] = {"options": "-c synchronous_commit=off"}
        return PostgresStore(create_engine(url, **kwargs))
    from tasks.store.directory import DirectoryStore

    return DirectoryStore(Path(url.removeprefix("file://")))


_CURRENT: dict[str, Any] = {}


def configure(settings: Settings) -> None:
    """Make ``settings`` this process's store configuration (workers call it at start-up;
    the store itself opens on first use, in each pool process)."""
    _CURRENT.clear()
    _CURRENT["settings"] = settings


def current() -> tuple[ArrayStore, Any]:
    """(store, host cache) of this process, opened lazily (a forked child opens its own)."""
    from tasks.store.hostcache import HostCache

    if _CURRENT.get("pid") != os.getpid():
        settings = _CURRENT.get("settings")
        if settings is None:
            raise RuntimeError(
                "the array store is not configured in this process: call "
                "tasks.store.open.configure(settings) first (workers do at start-up)"
            )
        _CURRENT.update(
            pid=os.getpid(),
            store=open_store(settings),
            cache=HostCache(settings.home / "worker-cache", settings.worker_cache_bytes),
            settings=settings,
        )
    return _CURRENT["store"], _CURRENT["cache"]


def current_settings() -> Any:
    """The settings object this process's store was configured with (as given)."""
    current()  # settles them, as it does for the store
    return _CURRENT["settings"]


def fetch(ref: dict[str, Any]) -> Any:
    """The array a reference names, through this host's cache (fetched from the store once
    per host, hash-checked on every read): a vector, or a CSR matrix."""
    from tasks.store.blobs import BlobError, decode

    store, cache = current()
    value = decode(ref["kind"], cache.get(ref["sha256"], lambda: store.get(ref["sha256"])))
    declared = [int(n) for n in ref.get("shape", [])]
    if list(value.shape) != declared:
        # a reference's shape decides sizes downstream: it must be the blob's own
        raise BlobError(f"blob {ref['sha256'][:12]} has shape {list(value.shape)}, not {declared}")
    return value
