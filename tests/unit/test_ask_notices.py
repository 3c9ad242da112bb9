"""Decision notices for askers: a burst's decisions packed into as few NOTIFY payloads as fit
under PostgreSQL's limit, and read back one by one by the asking client."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from app.client.asked import _notices
from app.scheduler.notices import MAX_NOTICE_BYTES, asked_notice, packed_notices


def _trial(i: int) -> dict[str, object]:
    return {
        "instance_id": i,
        "uuid": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd",
        "arm_index": i % 7,
        "propensity": 1 / 3,
        "reason": "explore",
        "policy_version": "smooth-ts:12",
        "attempt": 1,
        "budget": None if i % 2 else 2.5,
        "created_at": datetime(2026, 12, 6, 17, 0, 0, i, tzinfo=UTC),
    }


def test_a_burst_packs_into_few_payloads_under_the_limit_and_reads_back_whole() -> None:
    notices = [asked_notice(_trial(i)) for i in range(200)]
    payloads = packed_notices(notices)
    assert 1 < len(payloads) <= sum(map(len, notices)) // MAX_NOTICE_BYTES + 1
    assert all(len(p.encode()) <= MAX_NOTICE_BYTES for p in payloads)
    got = [n for p in payloads for n in _notices(p)]
    assert [iid for iid, _row in got] == list(range(200))
    iid, row = got[3]
    assert row[0] == "00000003-aaaa-bbbb-cccc-dddddddddddd" and row[1] == 3
    assert row[2] == 1 / 3 and row[6] is None and row[7] == _trial(3)["created_at"]
    assert got[4][1][6] == 2.5
    assert packed_notices([]) == []


def test_one_notice_of_an_older_scheduler_and_junk_are_read_safely() -> None:
    one = asked_notice(_trial(5))
    assert [i for i, _r in _notices(one)] == [5]
    assert _notices("not json") == [] and _notices(json.dumps({"a": 1})) == []
    assert _notices("[]") == []
    mixed = "[" + ",".join([one, '["x"]', asked_notice(_trial(6))]) + "]"
    assert [i for i, _r in _notices(mixed)] == [5, 6]
