"""The scheduler writes Celery protocol-2 task messages by hand
(app/scheduler/taskpublisher.py); this pins them to what Celery itself builds
(``app.amqp.as_task_v2``) with the same arguments, so a Celery upgrade that changes the format
fails here instead of silently breaking workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import Celery

from app.scheduler.taskpublisher import TaskPublisher
from tasks.messages import RUN_LONG_TRIAL_TASK, RUN_TRIAL_TASK

#: Headers Celery sets that the scheduler leaves out, each with the value Celery gives it for
#: a plain task (a worker treats a missing one the same way). A new header in a Celery release
#: shows up here and needs a decision.
OMITTED = {
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "parent_id": None,
    "kwargsrepr": "{}",
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}


class _Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def publish(self, body: str, properties: dict[str, Any], headers: dict[str, Any]) -> None:
        self.sent.append((body, properties, headers))


def _ours(task: str, limits: tuple[float | None, float | None]) -> tuple[Any, ...]:
    pub = TaskPublisher.__new__(TaskPublisher)
    pub.channel = _Capture()  # type: ignore[assignment]
    pub.origin = "banditq-scheduler@host"
    payload = {"v": 1, "trial": "t-1", "attempt": 2, "spec": {"x": [1.5, None]}}
    pub.publish(task, "t-1", payload, "trial t-1 attempt 2", limits[0], limits[1])
    ((body, properties, headers),) = pub.channel.sent  # type: ignore[attr-defined]
    return payload, json.loads(body), properties, headers


@pytest.mark.parametrize("task", [RUN_TRIAL_TASK, RUN_LONG_TRIAL_TASK])
@pytest.mark.parametrize("limits", [(None, None), (70.0, 60.0)])
def test_hand_written_task_message_equals_celerys_own(
    task: str, limits: tuple[float | None, float | None]
) -> None:
    payload, body, properties, headers = _ours(task, limits)
    celery = Celery(set_as_current=False)
    ref = celery.amqp.as_task_v2(
        "t-1",
        task,
        args=[payload],
        kwargs={},
        time_limit=limits[0],
        soft_time_limit=limits[1],
        origin="banditq-scheduler@host",
        ignore_result=True,
        argsrepr="trial t-1 attempt 2",
    )
    ref_args, ref_kwargs, ref_embed = ref.body
    assert body == [list(ref_args), ref_kwargs, ref_embed]
    assert properties == ref.properties
    for key, value in headers.items():
        if key == "timelimit" or (key not in ref.headers and limits == (None, None)):
            continue
        assert ref.headers[key] == value, key
    if limits != (None, None):
        assert headers["timelimit"] == ref.headers["timelimit"] == list(limits)
    else:  # Celery sends [None, None]; a worker reads a missing header the same way
        assert "timelimit" not in headers and ref.headers["timelimit"] == [None, None]
    missing = {k: ref.headers[k] for k in set(ref.headers) - set(headers) - {"timelimit"}}
    assert missing == OMITTED


def test_celery_worker_parses_the_message_into_the_task_call() -> None:
    """The worker's own parser (celery.app.trace / Request) reads our message as a call of
    the named task with the payload as its one argument."""
    from celery.worker.request import Request
    from kombu.message import Message

    payload, body, properties, headers = _ours(RUN_TRIAL_TASK, (70.0, 60.0))
    celery = Celery(set_as_current=False)
    message = Message(
        body=json.dumps(body),
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        properties=properties,
        delivery_info={"exchange": "", "routing_key": "q"},
    )
    req = Request(message, app=celery, task=celery.tasks.get(RUN_TRIAL_TASK) or _task(celery))
    assert req.id == "t-1" and req.name == RUN_TRIAL_TASK
    assert req.time_limits == [70.0, 60.0]
    args, kwargs, _embed = req.body if isinstance(req.body, tuple) else json.loads(req.body)
    assert list(args) == [payload] and kwargs == {}


def _task(celery: Celery) -> Any:
    @celery.task(name=RUN_TRIAL_TASK)
    def run_trial(payload: dict[str, Any]) -> None:
        return None

    return run_trial
