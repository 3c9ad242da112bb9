"""Separate RabbitMQ users per role (issue 27, item 10), on the real broker: a client can
publish wake-ups and nothing else; a worker reads trials and publishes results; the
scheduler does what it needs. Users are made with rabbitmqctl and removed afterwards."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import amqp.exceptions
import kombu
import pytest

from app.broker_users import permissions, rabbitmqctl_commands, user_name
from tasks.messages import events_queue, results_queue, trials_queue


def _ctl(*args: str) -> None:
    out = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def users(amqp_url: str, queue_name: str) -> Iterator[dict[str, str]]:
    prefix = f"bqt{uuid.uuid4().hex[:8]}"
    urls = {}
    for role in permissions(queue_name):
        _ctl("add_user", user_name(role, prefix), "pw-" + role)
        urls[role] = f"amqp://{user_name(role, prefix)}:pw-{role}@127.0.0.1:5672//"
    for cmd in rabbitmqctl_commands(queue_name, prefix=prefix):
        _ctl(*cmd[1:])
    try:
        yield urls
    finally:
        for role in permissions(queue_name):
            subprocess.run(
                ["rabbitmqctl", "delete_user", user_name(role, prefix)],
                capture_output=True,
                timeout=60,
            )


def _publish(url: str, queue: kombu.Queue, declare: bool = False) -> None:
    """Publish with confirms: a refused publish raises here, not on a later call."""
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            json.dumps({"v": 1}),
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            declare=[queue] if declare else [],
        )


def _consume(url: str, queue: kombu.Queue) -> None:
    with kombu.Connection(url) as conn, conn.SimpleQueue(queue) as sq:
        sq.get(timeout=5).ack()


REFUSED = (
    amqp.exceptions.AccessRefused,
    amqp.exceptions.NotAllowed,
    kombu.exceptions.OperationalError,
)


def test_each_role_can_do_only_what_it_needs(users: dict[str, str], queue_name: str) -> None:
    trials, results = trials_queue(queue_name), results_queue(queue_name)
    events, routed = events_queue(queue_name), trials_queue(f"{queue_name}.dev.cpu")
    # the scheduler declares every queue and publishes trials (also to a device class)
    for q in (trials, results, events, routed):
        with kombu.Connection(users["scheduler"]) as conn:
            q(conn.channel()).declare()
    _publish(users["scheduler"], trials)
    _publish(users["scheduler"], routed)
    # a client: wake-ups only
    _publish(users["client"], events, declare=True)
    for q in (results, trials):
        with pytest.raises(REFUSED):
            _publish(users["client"], q)
    with pytest.raises(REFUSED):
        _consume(users["client"], trials)
    # a worker: reads trials, publishes results, cannot forge wake-ups or read results
    _consume(users["worker"], trials)
    _consume(users["worker"], routed)
    _publish(users["worker"], results)
    with pytest.raises(REFUSED):
        _publish(users["worker"], events)
    with pytest.raises(REFUSED):
        _consume(users["worker"], results)
    # the scheduler reads results and wake-ups
    _consume(users["scheduler"], results)
    _consume(users["scheduler"], events)
