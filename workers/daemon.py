"""``banditq worker``: a Celery worker consuming trial queues.

One pool process per GPU (``CUDA_VISIBLE_DEVICES`` pinned per child, CUDA never touched in the
parent before fork) or per CPU slot. Prefork only: the solo pool blocks heartbeats during long
trials (celery #3430).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery.signals import worker_process_init

from app.config import Settings
from tasks.celery_app import make_celery
from workers.metrics import install as install_metrics

log = logging.getLogger("banditq.worker")


def gpu_count() -> int:
    """Count GPUs without initialising CUDA in this (parent) process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0


@worker_process_init.connect
def _pin_gpu(**_kwargs: Any) -> None:
    gpus = os.environ.get("BANDITQ_WORKER_GPUS")
    if not gpus:
        return
    from billiard.process import current_process

    index = getattr(current_process(), "index", 0) or 0
    ids = gpus.split(",")
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    name: str | None = None,
    loglevel: str = "INFO",
    queues: list[str] | None = None,
    metrics_port: int = 0,
) -> None:
    gpus = gpu_count()
    if concurrency is None:
        concurrency = gpus if gpus > 0 else (os.cpu_count() or 1)
    if gpus > 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(str(i) for i in range(gpus))
        os.environ["BANDITQ_WORKER_GPUS"] = visible
    app = make_celery(settings)
    if metrics_port:
        # Created before the pool forks: every pool process adds to the same counters.
        install_metrics().serve(metrics_port)
        log.info("worker metrics on http://127.0.0.1:%d/metrics", metrics_port)
    hostname = name or f"banditq-{socket.gethostname()}-{os.getpid()}@%h"
    log.info(
        "worker %s: %d process(es), broker %s",
        hostname,
        concurrency,
        settings.redacted()["broker_url"],
    )
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--hostname={hostname}",
        f"--queues={','.join(queues or [settings.queue])}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    app.worker_main(argv)
