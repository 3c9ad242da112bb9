"""``banditq worker``: a Celery worker consuming trial queues.

One pool process per GPU (``CUDA_VISIBLE_DEVICES`` pinned per child, CUDA never touched in the
parent before fork) or per CPU slot; or (``BANDITQ_WORKER_POOL=threads``) one trial at a time
in a thread of this process, for short chained steps. Never the solo pool: it blocks
heartbeats during long trials (celery #3430).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from celery.signals import worker_process_init

from app.config import Settings
from tasks.channel import ChannelPublisher
from tasks.errors import ConfigError
from tasks.messages import (
    WorkerAnnouncement,
    device_class,
    device_queue_name,
    kind_queue_name,
    results_queue,
)
from workers.celery_app import make_celery
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


@worker_process_init.connect
def _limit_blas(**_kwargs: Any) -> None:
    threads = os.environ.get("BANDITQ_WORKER_BLAS_THREADS")
    if threads:
        limit_blas(int(threads))


def limit_blas(threads: int) -> None:
    """Cap the BLAS libraries this process has loaded (numpy's and scipy's) at ``threads``;
    the environment variables cover any loaded later. Called in each pool process after the
    fork (a thread pool does not survive a fork reliably)."""
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS: the limit covers loaded ones
    from threadpoolctl import threadpool_limits

    n = str(max(1, threads))
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        os.environ[var] = n
    threadpool_limits(limits=int(n), user_api="blas")


def worker_profile(gpus: int) -> dict[str, Any]:
    """Type, compute capability and threads of this worker's device, without initialising
    CUDA in this (parent) process: a forked pool child could not use it afterwards."""
    import torch

    profile: dict[str, Any] = {
        "type": "cpu",
        "capability": 0.0,
        "threads": float(torch.get_num_threads()),
    }
    if gpus <= 0:
        return profile
    probe = "import json, torch; print(json.dumps(torch.cuda.get_device_capability(0)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        major, minor = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log.warning("could not read the GPU's compute capability: %s", out.stderr[-500:])
        major, minor = 0, 0
    return {**profile, "type": "cuda", "capability": major + minor / 10.0}


def start_announcer(
    settings: Settings, worker: str, profile: dict[str, Any], slots: int
) -> threading.Event:
    """Tell the scheduler this worker's device class now and every ``announce_seconds``
    (a daemon thread with its own connection; set the returned event to stop it)."""
    stop = threading.Event()
    app = make_celery(settings)

    def loop() -> None:
        publisher = ChannelPublisher(
            app.connection_for_write, results_queue(settings.queue, settings.queue_type)
        )
        while not stop.is_set():
            try:
                publisher.publish(
                    json.dumps(WorkerAnnouncement.of(worker, profile, slots).to_json())
                )
            except Exception as exc:  # the next announcement may get through
                log.warning("worker announcement failed: %s", exc)
            stop.wait(settings.announce_seconds)
        publisher.close()

    threading.Thread(target=loop, name="banditq-announce", daemon=True).start()
    return stop


def worker_kinds(settings: Settings) -> tuple[str, ...]:
    """The kinds this worker runs: ``BANDITQ_WORKER_KINDS`` (each must load here), else
    every installed kind that loads (one that fails to import is logged and left out);
    never an external kind (its callers run its trials)."""
    from tasks.kinds import get_kind
    from tasks.plugins import KINDS_GROUP, PluginError, names

    wanted = [k.strip() for k in settings.worker_kinds.split(",") if k.strip()]
    out = []
    for name in wanted or names(KINDS_GROUP):
        try:
            if getattr(get_kind(name), "external", False):
                continue
        except PluginError as exc:
            if wanted:
                raise ConfigError(
                    f"BANDITQ_WORKER_KINDS: {exc}; `banditq kinds` lists them"
                ) from exc
            log.warning("kind %s left out on this worker: %s", name, exc)
            continue
        out.append(name)
    return tuple(out)


def warm_up(kinds: tuple[str, ...]) -> None:
    """Each kind's warm-up, in this process before the pool forks (children inherit what
    it loaded and compiled): a worker's first trial then costs what any other does. A
    warm-up that fails is logged; the kind still runs (and fails its trials with the
    reason if it is really broken)."""
    from tasks.kinds import get_kind

    for name in kinds:
        t0 = time.perf_counter()
        try:
            get_kind(name).warm_up()
        except Exception as exc:
            log.warning("kind %s: warm-up failed (%s: %s)", name, type(exc).__name__, exc)
            continue
        log.debug("kind %s warmed up in %.0f ms", name, (time.perf_counter() - t0) * 1000)


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
    threads = settings.worker_pool == "threads"
    if concurrency is None:
        concurrency = 1 if threads else gpus if gpus > 0 else (os.cpu_count() or 1)
    if threads and concurrency != 1:
        # Caches, chained solutions and device pinning are per process: one trial at a time.
        raise ConfigError(
            f"--concurrency {concurrency} with BANDITQ_WORKER_POOL=threads: the threads pool "
            "runs one trial at a time; start more workers, or use BANDITQ_WORKER_POOL=prefork"
        )
    if gpus > 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(str(i) for i in range(gpus))
        os.environ["BANDITQ_WORKER_GPUS"] = visible
    profile = worker_profile(gpus)
    cls = device_class(profile)
    kinds = worker_kinds(settings)
    app = make_celery(settings, (cls,), kinds)
    from workers.context import configure

    # the worker context: array store (opened in each pool process on first use), kernel
    # cache bound, chain memory, heartbeat and result publisher
    configure(settings)
    # Read by each pool process after the fork (see _limit_blas).
    os.environ["BANDITQ_WORKER_BLAS_THREADS"] = str(max(1, settings.worker_blas_threads))
    if threads:  # no fork: trials run in this process
        limit_blas(settings.worker_blas_threads)
        _pin_gpu()
    if metrics_port:
        # Created before the pool forks: every pool process adds to the same counters.
        install_metrics().serve(metrics_port)
        log.info("worker metrics on http://127.0.0.1:%d/metrics", metrics_port)
    hostname = name or f"banditq-{socket.gethostname()}-{os.getpid()}@%h"
    log.info(
        "worker %s: %d process(es) on %s, broker %s",
        hostname.replace("%h", socket.gethostname()),
        concurrency,
        cls,
        settings.redacted()["broker_url"],
    )
    if queues is None:
        # The shared queue (older schedulers), the queue of trials decided for this device
        # class, and one queue per kind this worker runs: a trial of a kind it lacks never
        # reaches it.
        queues = [settings.queue, device_queue_name(settings.queue, cls)]
        queues += [kind_queue_name(settings.queue, k) for k in kinds]
    log.info("worker kinds: %s", ", ".join(kinds))
    warm_up(kinds)
    start_announcer(settings, hostname.replace("%h", socket.gethostname()), profile, concurrency)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--pool={settings.worker_pool}",
        f"--hostname={hostname}",
        f"--queues={','.join(queues)}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    app.worker_main(argv)
