"""The one-document encodings a burst crosses to PostgreSQL in: the client's instances and
the scheduler's trial rows (what the statements read back is checked on PostgreSQL by the
integration tests; here, the documents themselves)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.client.store import insert_pg_params
from app.scheduler.store.postgres import TRIAL_COLUMNS, _records


def _trial(i: int, at: datetime, lease: datetime | None) -> dict[str, object]:
    row: dict[str, object] = {c: None for c, _t in TRIAL_COLUMNS}
    row.update(uuid=f"u{i}", campaign_id=1, instance_id=i, created_at=at, lease_expires_at=lease)
    return row


def test_trial_rows_spell_each_rows_own_instants() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)
    later = now + timedelta(hours=1)
    rows = [_trial(0, now, later), _trial(1, now, None), _trial(2, later, now)]
    doc = json.loads(_records(rows, TRIAL_COLUMNS))
    assert [d["created_at"] for d in doc] == [now.isoformat(), now.isoformat(), later.isoformat()]
    assert [d["lease_expires_at"] for d in doc] == [later.isoformat(), None, now.isoformat()]
    assert [d["instance_id"] for d in doc] == [0, 1, 2]
    assert rows[0]["created_at"] is now  # the caller's rows are not changed


def test_instances_go_as_one_array_each_in_order_non_finite_as_null() -> None:
    params = insert_pg_params(
        7, [({"c": 0.5}, {"m": float("nan")}), ({"c": 1.5}, {}), ({"c": -2.0}, {"k": [1, 2]})]
    )
    assert params["cid"] == 7 and params["n"] == 3
    assert json.loads(params["contexts"]) == [{"c": 0.5}, {"c": 1.5}, {"c": -2.0}]
    assert json.loads(params["specs"]) == [{"m": None}, {}, {"k": [1, 2]}]
