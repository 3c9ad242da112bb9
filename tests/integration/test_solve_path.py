"""The short path of one solve on the real PostgreSQL and RabbitMQ: the one-statement submit,
the scheduler reading only what has arrived, the client woken by its own NOTIFY."""

from __future__ import annotations

import threading
import time

import kombu
import pytest
from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.scheduler.consumer import more_arrived as _more_arrived
from tasks.errors import InputError
from tasks.linsys import LinearSystem
from tests.inline import serving

pytestmark = pytest.mark.integration


def test_submit_reserves_consecutive_sequence_numbers_under_concurrency(
    pg_settings: Settings,
) -> None:
    """Four clients submit at once: every instance gets its own sequence number, in
    submission order per call, and the campaign's counter matches."""
    Client(settings=pg_settings).create_campaign("seq", "noop", [{"cost": 1.0}])
    ids: list[list[int]] = []

    def submit() -> None:
        with Client(settings=pg_settings) as c:
            camp = c.campaign("seq")
            for _ in range(10):
                ids.append(camp.submit_many([(None, {}) for _ in range(5)], cost=1.0))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client = Client(settings=pg_settings)
    with client.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, seq FROM instances")).all())
        counter = conn.execute(text("SELECT n_instances FROM campaigns")).scalar()
    assert sorted(rows.values()) == list(range(200)) and counter == 200
    for batch in ids:  # one call's instances are consecutive, in the order given
        seqs = [rows[i] for i in batch]
        assert seqs == list(range(seqs[0], seqs[0] + 5))
    client.close()


def test_submit_to_a_campaign_that_is_not_active_writes_nothing(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_campaign("stopped", "noop", [{"cost": 1.0}])
    camp.submit(None, {})
    with client.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET status = 'paused'"))
    with pytest.raises(InputError, match="is paused") as info:
        camp.submit(None, {})
    assert info.value.field == "campaign"
    with client.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instances")).scalar() == 1
        assert conn.execute(text("SELECT n_instances FROM campaigns")).scalar() == 1
    client.close()


def test_more_arrived_sees_what_the_broker_already_sent(amqp_url: str, queue_name: str) -> None:
    got: list[int] = []
    with kombu.Connection(amqp_url) as conn:
        q = kombu.Queue(queue_name, durable=False, auto_delete=True)
        ch = conn.channel()
        q(ch).declare()
        with kombu.Consumer(ch, [q], callbacks=[lambda b, m: (got.append(b), m.ack())]):
            assert not _more_arrived(conn)
            producer = kombu.Producer(conn.channel())
            for i in range(3):
                producer.publish(i, routing_key=queue_name, serializer="json")
            deadline = time.monotonic() + 5
            while not _more_arrived(conn) and time.monotonic() < deadline:
                time.sleep(0.01)
            while _more_arrived(conn):
                conn.drain_events(timeout=1)
            assert got == [0, 1, 2] and not _more_arrived(conn)


def test_solves_survive_other_completions_and_a_lost_listener(pg_settings: Settings) -> None:
    """A solve reads its result when its own NOTIFY arrives: other instances finishing do
    not confuse it, and a listener killed between solves is reopened without a stall."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign("solve", "sor", {"omega": [1.5]})
    other = client.create_campaign("other", "noop", [{"cost": 1.0}])
    system = LinearSystem.laplace2d(6, 0.2, seed=1)
    with serving(pg_settings):
        first = camp.solve(system, {}, timeout=60)
        other.submit_many([(None, {}) for _ in range(20)], cost=1.0)  # their NOTIFYs too
        second = camp.solve(system, {}, timeout=60)
        pid = client.completions._listen.info.backend_pid
        with client.engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        t = time.monotonic()
        third = camp.solve(system, {}, timeout=60)
        took = time.monotonic() - t
    assert first.converged and second.converged and third.converged
    assert first.trial_id != second.trial_id != third.trial_id
    assert took < 5.0, took
    client.close()


def test_a_client_between_waits_holds_no_listen(pg_settings: Settings) -> None:
    """An idle client that kept LISTENing without reading held back PostgreSQL's shared
    notification queue: it listens only while it waits."""
    client = Client(settings=pg_settings)
    camp = client.create_campaign("idle", "noop", [{"cost": 1.0}])

    def channels() -> list[str]:
        listen = client.completions._listen
        return [r[0] for r in listen.execute("SELECT pg_listening_channels()").fetchall()]

    with serving(pg_settings):
        camp.submit_many([(None, {}) for _ in range(3)])
        camp.wait(timeout=60)
        assert channels() == []
        solved = camp.solve(LinearSystem.laplace2d(4, 0.1), {}, timeout=60)
        assert channels() == []
        assert client.completions.listening() and channels() == ["banditq_done"]
        client.completions.release()
        solved_again = camp.solve(LinearSystem.laplace2d(4, 0.2), {}, timeout=60)
    assert solved.trial_id != solved_again.trial_id
    client.close()
