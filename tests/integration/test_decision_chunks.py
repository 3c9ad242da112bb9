"""A burst decided in several chunks on PostgreSQL: each chunk's rows are written on the
decision writer thread while the next chunk's choices are made. Every instance is decided
once, in order; a chunk whose statement fails is decided campaign by campaign (the next
chunk chosen again, without the campaign that broke); a chunk lost with the connection
leaves the rest pending for the next step, never decided twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import func, select

from app.client import Client
from app.config import Settings
from models import Campaign, Trial
from tests.inline import InlineScheduler

ARMS = [{"cost": 1.0}, {"cost": 2.0}, {"cost": 3.0}]


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=pg_url)


def _campaign(client: Client, name: str, n: int) -> Any:
    camp = client.create_campaign(name, "noop", ARMS, context_features=["x"], max_in_flight=n)
    camp.submit_many([(None, {"x": float(i)}) for i in range(n)])
    return camp


def _trials_per_instance(client: Client) -> dict[int, int]:
    with client.Session() as s:
        rows = s.execute(select(Trial.instance_id, func.count()).group_by(Trial.instance_id))
        return {int(i): int(n) for i, n in rows}


def _record_spy(sch: InlineScheduler, fail: Any = None) -> list[tuple[str, list[int]]]:
    """Each decision write as (thread name, campaign ids of its rows); ``fail(rows)`` may
    raise in place of the write."""
    seen: list[tuple[str, list[int]]] = []
    real = sch.core.store.record_decisions

    def spy(session: Any, trials: list[dict[str, Any]], asked: Any = ()) -> None:
        seen.append((threading.current_thread().name, [t["campaign_id"] for t in trials]))
        if fail is not None:
            fail(trials)
        real(session, trials, asked)

    sch.core.store.record_decisions = spy  # type: ignore[method-assign]
    return seen


def test_a_burst_in_chunks_is_decided_once_each_chunk_written_beside_the_next_choice(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    a, b = _campaign(client, "a", 30), _campaign(client, "b", 21)
    sch = InlineScheduler(settings, decision_chunk=8)
    seen = _record_spy(sch)
    sch.sweep()
    assert len(sch.published) == 51
    assert [len(ids) for _t, ids in seen] == [8] * 6 + [3]
    # every chunk but the last is written on the writer thread; the last where it was chosen
    assert all(t.startswith("banditq-decision-writer") for t, _ids in seen[:-1])
    assert seen[-1][0] == threading.current_thread().name
    per = _trials_per_instance(client)
    assert len(per) == 51 and set(per.values()) == {1}
    # in the order the instances were read: a's oldest first, then b's
    order = [p["campaign"] for p in sch.published]
    assert order == ["a"] * 30 + ["b"] * 21
    assert sch.run_until_idle(max_rounds=500) >= 0
    assert a.counts() == {"done": 30} and b.counts() == {"done": 21}
    sch.decider.close()


def test_a_chunk_whose_statement_fails_is_decided_campaign_by_campaign(
    settings: Settings,
) -> None:
    """Campaign b's rows make every statement fail (as a value a column refuses would): the
    chunk holding them is decided campaign by campaign, b is marked broken, and the chunks
    after it (chosen while the failing one was written) are chosen again without b."""
    client = Client(settings=settings)
    a, b = _campaign(client, "a", 20), _campaign(client, "b", 20)

    def refuse_b(trials: list[dict[str, Any]]) -> None:
        if any(t["campaign_id"] == b.id for t in trials):
            raise sqlalchemy.exc.DataError("INSERT", {}, ValueError("value out of range"))

    sch = InlineScheduler(settings, decision_chunk=8)
    seen = _record_spy(sch, refuse_b)
    sch.sweep()
    # chunks: a 8, a 8, a 4 + b 4 (fails: a 4 alone, b 4 alone fails), then nothing for b
    writes = [sorted(set(ids)) for _t, ids in seen if ids]
    assert writes == [[a.id], [a.id], [a.id, b.id], [a.id], [b.id]]
    with client.Session() as s:
        row = s.get(Campaign, b.id)
        assert row is not None and row.status == "broken"
        assert "value out of range" in str(row.broken_reason)
    per = _trials_per_instance(client)
    assert len(per) == 20 and set(per.values()) == {1}
    assert len(sch.published) == 20 and {p["campaign"] for p in sch.published} == {"a"}
    assert b.counts() == {"pending": 20}
    sch.decider.close()


def test_a_chunk_lost_with_the_connection_leaves_the_rest_pending_not_decided_twice(
    settings: Settings,
) -> None:
    client = Client(settings=settings)
    camp = _campaign(client, "a", 40)
    calls = {"n": 0}

    def drop_second(trials: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, OSError("connection lost"))

    sch = InlineScheduler(settings, decision_chunk=8)
    _record_spy(sch, drop_second)
    sch.sweep()
    # the first chunk committed and went out; the scheduler forgot the rest and paused
    assert len(sch.published) == 8
    counts = camp.counts()
    assert counts["pending"] == 32 and sum(counts.values()) == 40
    sch.run_until_idle(max_rounds=500)
    per = _trials_per_instance(client)
    assert len(per) == 40 and set(per.values()) == {1}
    assert camp.counts() == {"done": 40}
    sch.decider.close()
