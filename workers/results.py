"""Publishing a trial's result message to the scheduler (the result is the trial's only
record: the publisher retries through a broker restart)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.utils.json import dumps

from workers.context import context


def publish_result(app: Celery, message: dict[str, Any]) -> None:
    """Send one result message on this process's result publisher."""
    # kombu's encoder: kinds may report datetimes, UUIDs or decimals in metrics or outputs.
    context().result_publisher(app).publish(dumps(message))
