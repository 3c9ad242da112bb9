"""Ask/tell on the embedded default (SQLite and the filesystem broker, no servers): the
scheduler runs in a thread of the test process, as `banditq scheduler` would beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.scheduler import Scheduler
from tasks.errors import InputError


@pytest.fixture
def running(embedded_settings: Settings) -> Iterator[Client]:
    client = Client(settings=embedded_settings)
    sch = Scheduler(embedded_settings)
    th = threading.Thread(target=sch.run, daemon=True)
    th.start()
    try:
        yield client
    finally:
        sch.stop()
        th.join(10)
        client.close()


def _rows(client: Client, name: str) -> list[Any]:
    with client.engine.connect() as c:
        return list(
            c.execute(
                text(
                    "SELECT status, cost, error, worker FROM trial_results WHERE campaign = :n "
                    "ORDER BY instance_seq"
                ),
                {"n": name},
            )
        )


def _settle(client: Client, name: str, n: int, timeout: float = 20.0) -> list[Any]:
    """The campaign's rows once ``n`` of them are final."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(client, name)
        if sum(r.status != "running" for r in rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_ask_tell_trial_and_ask_many(running: Client) -> None:
    client = running
    arms = {"omega": [1.0, 1.4, 1.8]}
    camp = client.create_campaign("ext", "external", arms, context_features=["c"])
    d = camp.ask({"c": 0.3})
    assert d.arm in [{"omega": w} for w in arms["omega"]]
    assert 0.0 < d.propensity <= 1.0 and d.reason and d.policy_version
    assert d.budget is None and d.fallback_arm is None
    assert [r.status for r in _rows(client, "ext")] == ["running"]  # decided, logged
    camp.tell(d, cost=12.0, iterations=12, latency_ms=3.5, converged=True)
    with pytest.raises(InputError, match="already told") as err:
        camp.tell(d, cost=1.0)
    assert err.value.field == "decision"

    ds = camp.ask_many([{"c": 0.1}, {"c": 0.2}, {"c": 0.9}])
    assert len({x.id for x in ds}) == 3 and [x.context["c"] for x in ds] == [0.1, 0.2, 0.9]
    for x in ds:
        camp.tell(x, cost=5.0)
    with camp.trial({"c": 0.5}) as t:
        assert t.arm == t.decision.arm
        t.tell(cost=7.0)
    with pytest.raises(RuntimeError, match="diverged"), camp.trial({"c": 0.5}):
        raise RuntimeError("diverged at step 3")
    with pytest.raises(InputError, match="without t.tell"), camp.trial({"c": 0.5}):
        pass
    rows = _settle(client, "ext", 7)
    assert [r.status for r in rows] == ["succeeded"] * 5 + ["failed"] * 2
    assert rows[0].cost == 12.0 and rows[0].worker.startswith("client:")
    assert rows[5].error == "RuntimeError: diverged at step 3"
    assert "without t.tell" in rows[6].error
    with client.engine.connect() as c:
        n_updates = c.execute(text("SELECT n_updates FROM campaigns WHERE name = 'ext'")).scalar()
    assert n_updates == 5  # failures are no cost to the policy


def test_untold_decisions_are_abandoned_and_later_tells_refused(running: Client) -> None:
    camp = running.create_campaign(
        "short", "external", {"k": [1, 2]}, context_features=["c"], tell_timeout=1
    )
    d = camp.ask({"c": 0.0})
    rows = _settle(running, "short", 1, timeout=30)
    assert [r.status for r in rows] == ["abandoned"]
    assert "tell_timeout of 1 s" in rows[0].error
    with pytest.raises(InputError, match="abandoned.*ask again"):
        camp.tell(d, cost=1.0)


def test_bad_asks_and_tells_name_the_field(running: Client) -> None:
    client = running
    camp = client.create_campaign(
        "lat", "external", {"k": [1, 2]}, context_features=["c"], cost="latency_ms"
    )
    with pytest.raises(InputError) as err:
        camp.ask({"c": 0.1, "z": 2})
    assert err.value.field == "context.z"
    with pytest.raises(InputError) as err:
        camp.ask({})
    assert err.value.field == "context.c"
    d = camp.ask({"c": 0.1})
    with pytest.raises(InputError) as err:
        camp.tell(d, cost=3.0)  # the campaign reads latency_ms
    assert err.value.field == "latency_ms"
    with pytest.raises(InputError) as err:
        camp.tell(d, latency_ms=float("nan"))
    assert err.value.field == "latency_ms"
    with pytest.raises(InputError) as err:
        camp.tell("no-such-decision", latency_ms=1.0)
    assert err.value.field == "decision"
    camp.tell(d, latency_ms=2.5)
    assert _settle(client, "lat", 1)[0].cost == 2.5

    with pytest.raises(InputError) as err:
        client.create_campaign("x", "noop", [{"cost": 1.0}], tell_timeout=5)
    assert err.value.field == "tell_timeout"
    with pytest.raises(InputError) as err:
        client.create_campaign("y", "external", {"k": [1]}, cost="seconds")
    assert err.value.field == "cost"
    with pytest.raises(InputError) as err:
        client.create_campaign("y", "external", {"k": [1]}, tell_timeout=0)
    assert err.value.field == "tell_timeout"

    # a budget in matrix-vector products needs a kind whose runner times one
    levelled = {"arm": 0, "budget": 2.0, "level": {"offset": 7.0}}
    with pytest.raises(InputError) as err:
        client.create_campaign("z", "external", {"k": [1, 2]}, policy_config={"fallback": levelled})
    assert err.value.field == "policy_config.fallback.level"

    noop = client.create_campaign("n", "noop", [{"cost": 1.0}])
    with pytest.raises(InputError, match="kind='external'"):
        noop.ask({})
    camp.pause()
    with pytest.raises(InputError, match="paused"):
        camp.ask({"c": 0.2})


def test_guard_and_fallback_work_on_external_campaigns(running: Client) -> None:
    camp = running.create_campaign(
        "guarded",
        "external",
        {"omega": [1.0, 1.5, 1.9]},
        context_features=["c"],
        policy_config={
            "guard": {"baseline_arm": 0, "tolerance": 0.1},
            "fallback": {"arm": 0, "budget": 2.0},
        },
    )
    first = camp.ask({"c": 0.5})
    assert first.arm == {"omega": 1.0} and first.budget is None  # the fallback, seen first
    assert first.fallback_arm == {"omega": 1.0}
    camp.tell(first, cost=10.0)
    for i in range(12):
        d = camp.ask({"c": i / 12})
        if d.arm != {"omega": 1.0}:
            assert d.budget == pytest.approx(20.0, rel=0.2)  # 2x the fallback's ~10
            camp.tell(d, cost=40.0, converged=False)  # stopped at its budget: censored
        else:
            camp.tell(d, cost=10.0)
    rows = _settle(running, "guarded", 13)
    assert [r.status for r in rows] == ["succeeded"] * 13
    with running.engine.connect() as c:
        censored = c.execute(text("SELECT count(*) FROM results WHERE censored IS TRUE")).scalar()
    assert censored == sum(1 for r in rows if r.cost == 40.0)
