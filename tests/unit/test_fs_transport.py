"""The embedded broker (``tasks.fs_transport``): atomic message files, taken in the order one
publisher sent them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from kombu import Connection, Exchange, Queue

from app.config import Settings
from tasks import messages  # noqa: F401  (registers the transport)
from tasks.fs_transport import message_name


def test_names_sort_in_publication_order_within_one_millisecond() -> None:
    names = [message_name("q") for _ in range(2000)]
    assert sorted(names) == names
    assert all(n.partition(".")[2] == "q.msg" for n in names)


def test_a_burst_is_consumed_in_the_order_it_was_published(tmp_path: Path) -> None:
    """A scheduler publishing a chain's steps together: the worker must see them in order
    (out of order, a step that needs its predecessor's solution goes back to the queue)."""
    settings = Settings(home=tmp_path)
    queue = Queue("burst", Exchange("burst", type="direct"), routing_key="burst")
    with Connection(
        settings.broker_url, transport_options=settings.broker_transport_options()
    ) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(300):
            producer.publish(
                {"i": i}, exchange=queue.exchange, routing_key="burst", declare=[queue]
            )
        got: list[int] = []
        with conn.SimpleQueue(queue) as sq:
            while len(got) < 300:
                msg = sq.get(timeout=5)
                got.append(int(msg.payload["i"]))
                msg.ack()
    assert got == list(range(300))


def test_two_homes_in_one_process_each_get_their_messages(tmp_path: Path) -> None:
    """kombu records declarations once per process: a second home's binding was taken as
    declared and never written, and its messages were routed nowhere."""
    queue = Queue("same", Exchange("same", type="direct"), routing_key="same")
    for home in ("one", "two"):
        settings = Settings(home=tmp_path / home)
        with Connection(
            settings.broker_url, transport_options=settings.broker_transport_options()
        ) as conn:
            conn.Producer(serializer="json").publish(
                {"home": home}, exchange=queue.exchange, routing_key="same", declare=[queue]
            )
            with conn.SimpleQueue(queue) as sq:
                msg = sq.get(timeout=5)
                assert msg.payload == {"home": home}
                msg.ack()


def test_a_queue_bound_after_the_first_publish_still_gets_its_messages(tmp_path: Path) -> None:
    """Routes are cached per channel; a routing key bound later (by another process) is
    looked up afresh."""
    settings = Settings(home=tmp_path)
    exchange = Exchange("shared", type="direct")
    first = Queue("first", exchange, routing_key="first")
    later = Queue("later", exchange, routing_key="later")
    opts = settings.broker_transport_options()
    with Connection(settings.broker_url, transport_options=opts) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish({"n": 1}, exchange=exchange, routing_key="first", declare=[first])
        with Connection(settings.broker_url, transport_options=opts) as other:
            later(other.default_channel).declare()  # bound by someone else, afterwards
        producer.publish({"n": 2}, exchange=exchange, routing_key="later")
        producer.publish({"n": 3}, exchange=exchange, routing_key="first")
        for queue, want in ((first, [1, 3]), (later, [2])):
            with conn.SimpleQueue(queue) as sq:
                got = []
                for _ in want:
                    msg = sq.get(timeout=5)
                    got.append(msg.payload["n"])
                    msg.ack()
                assert got == want


CONSUMER = """
import json, sys
import threading
from pathlib import Path
from kombu import Connection, Exchange, Queue
from app.config import Settings
from tasks import messages  # registers the transport
settings = Settings(home=Path(sys.argv[1]))
queue = Queue("race", Exchange("race", type="direct"), routing_key="race")
got = []
with Connection(settings.broker_url, transport_options=settings.broker_transport_options()) as c:
    with c.SimpleQueue(queue) as sq:
        while True:
            try:
                msg = sq.get(timeout=3)
            except Exception as exc:
                if type(exc).__name__ == "Empty":
                    break
                raise
            got.append(int(msg.payload["i"]))
            msg.ack()
print(json.dumps(got))
"""


def test_two_consumers_with_temp_on_a_tmpfs_take_each_message_exactly_once(
    tmp_path: Path,
) -> None:
    """TMPDIR on another filesystem (a tmpfs) made kombu's move a copy that two consumers
    raced on (1 in 1,500 lost, a JSONDecodeError out of drain_events)."""
    import json
    import os
    import subprocess
    import sys

    shm = Path("/dev/shm")
    if not shm.is_dir():
        import pytest

        pytest.skip("no tmpfs at /dev/shm")
    settings = Settings(home=tmp_path)
    queue = Queue("race", Exchange("race", type="direct"), routing_key="race")
    n = 1500
    with Connection(
        settings.broker_url, transport_options=settings.broker_transport_options()
    ) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(n):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="race", declare=[queue])
    env = {**os.environ, "TMPDIR": str(shm)}
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    got = [i for out, _err in outs for i in json.loads(out.strip().splitlines()[-1])]
    assert sorted(got) == list(range(n))
    assert all(json.loads(out.strip().splitlines()[-1]) for out, _ in outs)  # both took some


def _at_once(n: int, work: Callable[[int, threading.Barrier], None]) -> list[BaseException]:
    """``work(i, start)`` for i < n, each in its own thread; ``start`` is a barrier the n
    share (each waits on it where the race should begin). Returns what the threads raised."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i, start)
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_binding_a_new_exchange_races_no_reader_into_an_empty_file(tmp_path: Path) -> None:
    """Processes declaring the same queues at start-up (a client's first tell, the scheduler)
    bind to an exchange file one of them is creating. kombu creates it empty, then locks and
    writes it: a reader in between failed with ``JSONDecodeError`` and the tell was not sent.
    Each round here binds a fresh exchange from several threads (each its own connection,
    so each its own file locks) while others read its table."""
    settings = Settings(home=tmp_path)
    opts = settings.broker_transport_options()
    errors: list[BaseException] = []
    rounds, binders = 40, 4

    def bind(name: str, i: int, start: threading.Barrier) -> None:
        with Connection(settings.broker_url, transport_options=opts) as conn:
            channel = conn.default_channel
            start.wait()
            Queue(f"q{i}", Exchange(name, type="direct"), routing_key=f"q{i}")(channel).declare()
            channel.get_table(name)

    for r in range(rounds):
        errors += _at_once(binders, lambda i, start, r=r: bind(f"ex{r}", i, start))
    assert errors == []
    with Connection(settings.broker_url, transport_options=opts) as conn:
        for r in range(rounds):
            queues = {q.queue for q in conn.default_channel.get_table(f"ex{r}")}
            assert queues == {f"q{i}" for i in range(binders)}  # no binding lost either


def test_a_queue_declared_by_two_threads_at_once_loses_no_message(tmp_path: Path) -> None:
    """A scheduler thread and a client in one process (a notebook, these tests) declare the
    same queue: kombu marks the binding declared in the process's broker state before it
    writes the exchange's file, so the second declarer returned at once and published into
    a table that did not list the queue yet (the message was dropped: a tell went missing).
    Each round, several threads declare a fresh queue and publish one message at once."""
    settings = Settings(home=tmp_path)
    opts = settings.broker_transport_options()
    rounds, threads_per_round = 30, 4
    errors: list[BaseException] = []

    def declare_and_publish(queue: Queue, start: threading.Barrier) -> None:
        with Connection(settings.broker_url, transport_options=opts) as conn:
            producer = conn.Producer(serializer="json")
            start.wait()
            producer.publish(
                {"n": 1},
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                declare=[queue],
            )

    queues = [
        Queue(f"q{r}", Exchange(f"ex{r}", type="direct"), routing_key=f"q{r}")
        for r in range(rounds)
    ]
    for queue in queues:
        errors += _at_once(
            threads_per_round, lambda _i, start, q=queue: declare_and_publish(q, start)
        )
    assert errors == []
    with Connection(settings.broker_url, transport_options=opts) as conn:
        for queue in queues:
            with conn.SimpleQueue(queue) as sq:
                assert sq.qsize() == threads_per_round, queue.name
