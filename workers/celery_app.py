"""The Celery application: JSON only, late acknowledgement, one reserved trial per process."""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.config import Settings
from tasks import messages as _messages  # noqa: F401  (registers the embedded transport)


def make_celery(
    settings: Settings, device_classes: tuple[str, ...] = (), kinds: tuple[str, ...] = ()
) -> Celery:
    """A Celery app bound to ``settings``; the same configuration for scheduler and workers.
    ``device_classes`` and ``kinds``: the routed trial queues a worker may consume."""
    app = Celery("banditq", broker=settings.broker_url, set_as_current=False)
    trials = _messages.trials_queue(settings.queue, settings.queue_type)
    # Every device class a worker may consume: declared on demand by name (see daemon).
    device_queues = [
        _messages.trials_queue(_messages.device_queue_name(settings.queue, c), settings.queue_type)
        for c in device_classes
    ] + [
        _messages.trials_queue(_messages.kind_queue_name(settings.queue, k), settings.queue_type)
        for k in kinds
    ]
    conf: dict[str, Any] = {
        # No pickle anywhere: a message in another format is refused by kombu and logged.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        # The database records results; the broker only carries work (see shared/CELERY.md).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": max(1, settings.worker_prefetch),
        # A broker blip must not kill running trials: the trial finishes and reports (its
        # redelivered copy, if any, is a duplicate the scheduler fences by attempt), and the
        # crash journal never counts a blip as a worker death.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        # A channel closed by RabbitMQ's consumer_timeout (a prefetched trial waiting behind a
        # long one) is reopened instead of killing the worker; long trials are acked on
        # receipt (RUN_LONG_TRIAL_TASK), so only the waiting message is redelivered.
        "broker_channel_error_retry": True,
        "broker_connection_max_retries": 100,
        "broker_transport_options": settings.broker_transport_options(),
        "task_queues": [trials, *device_queues],
        # Quorum queues: Celery then turns off global QoS, which they do not support.
        "task_default_queue_type": settings.queue_type,
        "task_default_queue": settings.queue,
        "task_default_exchange": settings.queue,
        "task_default_routing_key": settings.queue,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        # No remote control: its exclusive pidbox queue outlives a SIGKILLed worker on the
        # broker and makes the restarted worker (same name) die with RESOURCE_LOCKED.
        "worker_enable_remote_control": False,
        "imports": ["workers.run_trial"],
    }
    app.conf.update(conf)
    app.conf["banditq_settings"] = settings
    from workers.run_trial import register

    register(app)
    return app
