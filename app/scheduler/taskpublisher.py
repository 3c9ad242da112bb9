"""Publish trial tasks as Celery protocol-2 messages straight onto a channel.

``Celery.send_task`` builds each message through routing, signals and a 19-key header table;
profiling the scheduler showed it at about 1 ms per trial, the largest single cost of the
control plane, and kombu's ``Producer.publish`` still cost ~240 us (see tasks/channel.py).
This writes the same wire format (JSON body ``[args, kwargs, embed]``, the headers a Celery
worker reads) with a fixed header template through a :class:`ChannelPublisher`, so a Celery
worker cannot tell the difference. Not thread-safe: one publisher per scheduler thread.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import kombu

from tasks.channel import ChannelPublisher
from tasks.messages import device_queue_name, kind_queue_name, trials_queue

EMBED: dict[str, Any] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class TaskPublisher:
    """Sends tasks to the durable direct trials queue over a connection of its own."""

    def __init__(
        self, connect: Callable[[], kombu.Connection], queue: str, queue_type: str = "classic"
    ) -> None:
        self.queue = trials_queue(queue, queue_type)
        self.channel = ChannelPublisher(connect, self.queue)
        self.origin = f"banditq-scheduler@{socket.gethostname()}"
        self._connect = connect
        self._queue_type = queue_type
        #: one publisher per device-class queue, opened on first use
        self._routed: dict[str, ChannelPublisher] = {}

    def _channel_for(self, device_class: str | None, kind: str | None = None) -> ChannelPublisher:
        """The device class's queue when the trial was decided for one, else its kind's
        queue (consumed only by workers that have the kind), else the shared queue."""
        if device_class is not None:
            name = device_queue_name(self.queue.name, device_class)
        elif kind is not None:
            name = kind_queue_name(self.queue.name, kind)
        else:
            return self.channel
        pub = self._routed.get(name)
        if pub is None:
            pub = ChannelPublisher(self._connect, trials_queue(name, self._queue_type))
            self._routed[name] = pub
        return pub

    def publish(
        self,
        task: str,
        task_id: str,
        payload: dict[str, Any],
        argsrepr: str,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        device_class: str | None = None,
        kind: str | None = None,
    ) -> None:
        # The headers a Celery worker reads (celery.worker.request.Request): ``id`` and
        # ``task`` are required, the rest optional; each header costs AMQP table encoding on
        # every message, so only what it uses is sent.
        headers: dict[str, Any] = {
            "lang": "py",
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "retries": 0,
            "argsrepr": argsrepr,
            "origin": self.origin,
            "ignore_result": True,
        }
        if time_limit is not None or soft_time_limit is not None:
            headers["timelimit"] = [time_limit, soft_time_limit]
        self._channel_for(device_class, kind).publish(
            json.dumps([[payload], {}, EMBED]),
            properties={"correlation_id": task_id, "reply_to": ""},
            headers=headers,
        )

    def close(self) -> None:
        self.channel.close()
        for pub in self._routed.values():
            pub.close()
