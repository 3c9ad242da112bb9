"""The long-running processes: ``banditq scheduler``, ``worker`` and ``demo``."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from app.cli.base import _logging, _settings, cli


@cli.command()
def scheduler(
    loglevel: Annotated[str, typer.Option(help="log level")] = "INFO",
    idle_exit: Annotated[
        float | None, typer.Option(help="exit after this many idle seconds")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve Prometheus metrics on this port (env BANDITQ_METRICS_PORT)"),
    ] = None,
) -> None:
    """Run the scheduler: decides arms, publishes trials, records results, updates policies."""
    from app import db
    from app.cli.errors import check_broker
    from app.dev.local import exit_with_parent
    from app.scheduler import Scheduler

    _logging(loglevel)
    exit_with_parent()
    s = _settings()
    if s.database_url.startswith("sqlite"):
        db.upgrade(s.database_url)
    check_broker(s.broker_url, s.broker_transport_options())
    sch = Scheduler(s)
    port = metrics_port if metrics_port is not None else s.metrics_port
    if port:
        sch.metrics.serve(port)
    signal.signal(signal.SIGTERM, lambda *_: sch.stop())
    signal.signal(signal.SIGINT, lambda *_: sch.stop())
    try:
        sch.run(idle_exit=idle_exit)
    finally:
        sch.snapshot_all()


@cli.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            help="pool processes (default: one per GPU, else per CPU); the threads pool "
            "(BANDITQ_WORKER_POOL=threads) runs one trial at a time",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="worker name (Celery hostname)")] = None,
    loglevel: Annotated[str, typer.Option(help="log level")] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="serve this worker's Prometheus metrics (trials, running, durations) on "
            "this port (env BANDITQ_WORKER_METRICS_PORT)"
        ),
    ] = None,
) -> None:
    """Run a worker daemon consuming trials (Celery prefork, or one thread with
    BANDITQ_WORKER_POOL=threads; JSON only; late ack)."""
    from app.cli.errors import check_broker
    from app.dev.local import exit_with_parent
    from workers.daemon import run_worker

    _logging(loglevel)
    exit_with_parent()
    s = _settings()
    check_broker(s.broker_url, s.broker_transport_options())
    port = metrics_port if metrics_port is not None else s.worker_metrics_port
    run_worker(s, concurrency=concurrency, name=name, loglevel=loglevel, metrics_port=port)


@cli.command()
def demo(
    instances: Annotated[int, typer.Option(help="number of linear systems")] = 200,
    workers: Annotated[int, typer.Option(help="worker processes")] = 2,
    policy: Annotated[str, typer.Option(help="policy name")] = "default",
    seed: Annotated[int, typer.Option(help="seed of the instance stream")] = 0,
    timeout: Annotated[float, typer.Option(help="seconds before giving up")] = 900,
) -> None:
    """Tune SOR's omega over a stream of shifted 2-D Laplacians, end to end (scheduler and
    workers as separate processes), then print a summary against omega = 1."""
    from app.dev.demo import run_demo

    _logging("WARNING")
    code = run_demo(
        _settings(), instances=instances, workers=workers, policy=policy, seed=seed, timeout=timeout
    )
    raise typer.Exit(code)
