"""The array store against both backends (a directory and PostgreSQL, one contract suite),
the worker host's cache, and large systems by reference through the scheduler: uploads once,
solutions by reference, missing and corrupt blobs, an unwritable store, retention."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from sqlalchemy import func, select, text

from app.cli.storeadmin import gc, stats
from app.client import Client
from app.config import Settings
from models import BlobRef, Instance
from tasks.errors import StoreError
from tasks.linsys import LinearSystem
from tasks.solvers.generators import build, validate
from tasks.store.base import ArrayStore
from tasks.store.blobs import BlobError, csr_ref, decode, digest, encode_csr, vector_ref
from tasks.store.hostcache import HostCache
from tasks.store.open import open_store
from tests.conftest import drop_pg_database, fresh_pg_database, pg_url_of
from tests.inline import InlineScheduler, serving


@pytest.fixture(params=["directory", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose store is a directory (embedded SQLite) or PostgreSQL (the default when
    the database is PostgreSQL); a small inline threshold so that modest systems are stored."""
    home = tmp_path / "home"
    if request.param == "directory":
        yield Settings(home=home, sweep_seconds=1.0, inline_bytes=4096)
        return
    name = fresh_pg_database(request.getfixturevalue("pg_template"))
    try:
        yield Settings(
            home=home, database_url=pg_url_of(name), sweep_seconds=1.0, inline_bytes=4096
        )
    finally:
        drop_pg_database(name)


@pytest.fixture
def store(settings: Settings) -> Iterator[ArrayStore]:
    Client(settings=settings).close()  # schema
    s = open_store(settings)
    yield s
    s.close()


# ------------------------------------------------------------------ contract
def test_put_get_is_content_addressed_and_idempotent(store: ArrayStore) -> None:
    data = encode_csr(sp.random(50, 50, density=0.1, random_state=1) + sp.identity(50))
    h = store.put(data)
    assert h == digest(data) and store.exists(h)
    assert store.put(data) == h
    assert [b.sha256 for b in store.blobs()] == [h]
    assert store.get(h) == data
    A = decode("csr", store.get(h))
    assert A.shape == (50, 50) and A.indices.dtype == np.int32
    assert store.delete([h, "0" * 64]) == 1 and not store.exists(h)


def test_tags_point_at_blobs_latest_wins_and_gc_drops_them(store: ArrayStore) -> None:
    """A tag (a chained instance's solution, by instance id) on either backend: absent,
    written, overwritten; dropped with the blob it names, or when it names none and is old."""
    from datetime import UTC, datetime, timedelta

    h = store.put(b"solution bytes")
    assert store.get_tag("solution-7") is None
    store.set_tag("solution-7", {"error": "first attempt failed"})
    store.set_tag("solution-7", {"sha256": h, "kind": "vector", "shape": [1]})
    store.set_tag("solution-8", {"error": "failed"})
    assert store.get_tag("solution-7") == {"sha256": h, "kind": "vector", "shape": [1]}
    assert store.drop_tags({h}, datetime.now(UTC) - timedelta(hours=1)) == 1
    assert store.get_tag("solution-7") is None and store.get_tag("solution-8") is not None
    assert store.drop_tags(set(), datetime.now(UTC) + timedelta(seconds=5)) == 1
    assert store.get_tag("solution-8") is None


def test_missing_and_corrupt_blobs_are_refused(store: ArrayStore) -> None:
    with pytest.raises(BlobError, match="not in the store"):
        store.get("ab" * 32)
    _ref, data = vector_ref(np.arange(1000.0))
    h = store.put(data)
    _tamper(store, h)
    with pytest.raises(BlobError, match="corrupt"):
        store.get(h)


def _tamper(store: ArrayStore, h: str) -> None:
    from tasks.store.directory import DirectoryStore
    from tasks.store.postgres import PostgresStore

    if isinstance(store, DirectoryStore):
        path = store.root / h[:2] / h
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        assert isinstance(store, PostgresStore)
        with store.engine.begin() as c:
            c.execute(
                text("UPDATE store_chunks SET data = :d WHERE sha256 = :h"),
                {"d": b"garbage", "h": h},
            )


def test_a_failed_write_leaves_no_blob_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.store.directory import DirectoryStore

    store = DirectoryStore(tmp_path / "s")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    _ref, data = vector_ref(np.ones(100))
    with pytest.raises(BlobError, match="No space left"):
        store.put(data)
    assert store.blobs() == [] and list((tmp_path / "s" / "tmp").iterdir()) == []


# ------------------------------------------------------------------ host cache
def test_host_cache_fetches_once_refetches_a_vanished_or_corrupt_copy(tmp_path: Path) -> None:
    _ref, data = vector_ref(np.arange(500.0))
    h = digest(data)
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return data

    cache = HostCache(tmp_path / "c", max_bytes=10_000)
    assert cache.get(h, fetch) == data and cache.get(h, fetch) == data
    assert len(calls) == 1
    shutil.rmtree(tmp_path / "c")  # the cache directory vanishes
    assert cache.get(h, fetch) == data and len(calls) == 2
    (tmp_path / "c" / h).write_bytes(b"bad")  # a corrupt copy is never served
    assert cache.get(h, fetch) == data and len(calls) == 3
    for i in range(5):  # bounded: older entries are evicted
        _r, d = vector_ref(np.full(300, float(i)))
        cache.get(digest(d), lambda d=d: d)
    assert sum(p.stat().st_size for p in (tmp_path / "c").iterdir()) <= 10_000


# ------------------------------------------------------------------ through the scheduler
def _big(m: int = 40, seed: int = 1) -> tuple[sp.csr_matrix, np.ndarray]:
    return build(validate({"generator": "variable_diffusion2d", "m": m, "seed": seed}))


def test_large_systems_travel_by_reference_and_are_stored_once(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("big", "ssor-pcg", {"omega": [1.2, 1.6]}, max_in_flight=4)
    A, b = _big()
    for i in range(12):  # the same A, a new right-hand side each time
        camp.submit(LinearSystem(A, b * (1 + i)), {}, tol=1e-8)
    sch = InlineScheduler(settings)
    sch.run_until_idle()
    sent: list[dict[str, Any]] = sch.fake.sent
    assert camp.counts() == {"done": 12}
    assert all(r["converged"] for r in camp.results())
    import json

    assert max(len(json.dumps(p)) for p in sent) < 2048  # references, not arrays
    store = client.store
    a_hash = csr_ref(A)[0]["sha256"]
    kinds = {b_.sha256 for b_ in store.blobs()}
    assert a_hash in kinds and len(kinds) == 1 + 12  # A once, 12 right-hand sides
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(BlobRef)) == 24
    client.close()


def test_solve_returns_the_solution_by_reference_and_warm_starts_from_it(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("heat", "ssor-pcg", {"omega": [1.5]})
    A, b = _big(30)
    handle = client.store_matrix(A)
    with serving(settings):
        first = camp.solve(LinearSystem.affine(handle, b, alpha=1.0, beta=0.5), {}, timeout=60)
        again = camp.solve(
            LinearSystem.affine(handle, b, alpha=1.0, beta=0.5), {}, x0=first, timeout=60
        )
    M = sp.identity(A.shape[0]) + 0.5 * A
    np.testing.assert_allclose(first.x, spla.spsolve(M.tocsc(), b), rtol=1e-6, atol=1e-8)
    assert first.x_ref is not None and first.x_ref["kind"] == "vector"
    assert again.iterations is not None and first.iterations is not None
    assert again.iterations < first.iterations  # warm-started at the answer
    with client.engine.connect() as c:
        widest = c.execute(text("SELECT max(length(CAST(outputs AS text))) FROM results")).scalar()
    assert widest is not None and widest < 1024  # the row holds a reference, not n numbers
    client.close()


def test_a_missing_or_corrupt_blob_fails_the_trial_clearly(settings: Settings) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("lost", "sor", {"omega": [1.5]}, max_attempts=3)
    A, b = _big(20)
    ids = [camp.submit(LinearSystem(A, b), {}) for _ in range(1)]
    ids.append(camp.submit(LinearSystem(A * 2.0, b), {}))
    store = client.store
    with client.Session() as s:
        specs = dict(s.execute(select(Instance.id, Instance.spec)).all())
    lost = specs[ids[0]]["system"]["stored"]["A"]["sha256"]
    store.delete([lost])
    _tamper(store, specs[ids[1]]["system"]["stored"]["A"]["sha256"])
    sch = InlineScheduler(settings)
    rounds = sch.run_until_idle(max_rounds=20)
    assert rounds == 2  # one attempt each: no retry loop
    rows = {r["instance_id"]: r for r in camp.results()}
    assert rows[ids[0]]["status"] == "failed" and "not in the store" in rows[ids[0]]["error"]
    assert rows[ids[1]]["status"] == "failed" and "corrupt" in rows[ids[1]]["error"]
    client.close()


@pytest.fixture
def dir_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_seconds=1.0, inline_bytes=4096)


def test_an_unwritable_store_is_an_error_at_submit_and_nothing_is_written(
    dir_settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    bad = dataclasses.replace(dir_settings, store_url=f"file://{blocker}/store")
    client = Client(settings=bad)
    camp = client.create_campaign("ro", "sor", {"omega": [1.5]})
    A, b = _big(20)
    with pytest.raises(StoreError, match="cannot write to the store"):
        camp.submit(LinearSystem(A, b), {})
    assert camp.counts() == {}
    client.close()


def test_a_full_disk_at_submit_writes_nothing(
    dir_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(settings=dir_settings)
    camp = client.create_campaign("full", "sor", {"omega": [1.5]})
    A, b = _big(20)

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="No space left"):
        camp.submit(LinearSystem(A, b), {})
    monkeypatch.undo()
    assert camp.counts() == {} and client.store.blobs() == []
    assert list((dir_settings.home / "store" / "tmp").iterdir()) == []
    client.close()


def test_gc_removes_only_unreferenced_blobs_and_stats_count_per_campaign(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    camp = client.create_campaign("keep", "sor", {"omega": [1.5]})
    A, b = _big(25)
    camp.submit(LinearSystem(A, b), {})
    camp.submit(LinearSystem(A, 2 * b), {})
    _r, orphan = vector_ref(np.arange(3000.0))
    client.store.put(orphan)
    before = {x.sha256 for x in client.store.blobs()}
    assert len(before) == 4
    young = gc(settings, timedelta(hours=1))
    assert young["removed"] == 0  # too recent: it could belong to a submit in progress
    out = gc(settings, timedelta(seconds=0))
    after = {x.sha256 for x in client.store.blobs()}
    assert out["removed"] == 1 and after == before - {digest(orphan)}
    rows = {r["campaign"]: r for r in stats(settings)}
    assert rows["keep"]["blobs"] == 3
    assert rows["keep"]["bytes"] == sum(x.nbytes for x in client.store.blobs() if x.sha256 in after)
    assert rows["(unreferenced)"]["blobs"] == 0
    client.close()


# ------------------------------------------------------------------ gc against submits
def _age(store: ArrayStore, h: str, hours: float) -> None:
    """Make blob ``h`` look ``hours`` old."""
    from tasks.store.directory import DirectoryStore
    from tasks.store.postgres import PostgresStore

    then = datetime.now(UTC) - timedelta(hours=hours)
    if isinstance(store, DirectoryStore):
        path = store._path(h)
        os.utime(path, (then.timestamp(), then.timestamp()))
    else:
        assert isinstance(store, PostgresStore)
        with store.engine.begin() as c:
            c.execute(
                text("UPDATE store_blobs SET created_at = :t WHERE sha256 = :h"),
                {"t": then, "h": h},
            )


def test_a_re_put_blob_is_young_again_and_gc_keeps_it(
    settings: Settings, store: ArrayStore
) -> None:
    data = encode_csr(sp.identity(30, format="csr") * 2.0)
    h = store.put(data)
    _age(store, h, 2.0)
    assert store.put(data) == h  # a submit uploading the same content again
    out = gc(settings, timedelta(hours=1))
    assert out["removed"] == 0 and store.exists(h)
    _age(store, h, 2.0)
    assert gc(settings, timedelta(hours=1))["removed"] == 1 and not store.exists(h)


def test_gc_that_listed_a_blob_before_a_submit_re_put_it_keeps_it(store: ArrayStore) -> None:
    """The interleaving that lost data: gc lists an old unreferenced blob, a submit re-puts
    it and commits its reference, then gc deletes: the delete re-checks the age."""
    data = encode_csr(sp.identity(20, format="csr") * 3.0)
    h = store.put(data)
    _age(store, h, 2.0)
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    listed = [b.sha256 for b in store.blobs() if b.created_at < cutoff]
    assert listed == [h]
    store.put(data)  # the submit, between gc's listing and its delete
    assert store.delete(listed, before=cutoff) == 0 and store.exists(h)
    assert store.get(h) == data


def test_an_error_tag_never_replaces_a_solution_tag(store: ArrayStore) -> None:
    ref, data = vector_ref(np.arange(3.0))
    store.put(data)
    assert store.set_error_tag("solution-db-1", {"error": "first try failed"})
    store.set_tag("solution-db-1", {**ref, "attempt": 2})  # a solution replaces an error
    assert not store.set_error_tag("solution-db-1", {"error": "stale attempt 1 failed"})
    assert store.get_tag("solution-db-1") == {**ref, "attempt": 2}


def test_directory_store_files_are_readable_by_the_stores_group(tmp_path: Path) -> None:
    from tasks.store.directory import DirectoryStore

    store = DirectoryStore(tmp_path / "store")
    h = store.put(encode_csr(sp.identity(5, format="csr")))
    store.set_tag("solution-x-1", {"sha256": h, "kind": "vector"})
    for path in (store._path(h), *(tmp_path / "store" / "tags").glob("*.json")):
        assert path.stat().st_mode & 0o777 == 0o640, path
