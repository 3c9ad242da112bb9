"""The engine's ceiling: a bare Celery no-op task over RabbitMQ that writes one row to
PostgreSQL (used by benchmarks/throughput.py; run its worker with ``celery -A``)."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from celery import Celery
from celery.signals import worker_process_init

app = Celery("bare", broker=os.environ.get("BARE_BROKER", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=os.environ.get("BARE_QUEUE", "bare"),
    worker_hijack_root_logger=False,
)
_conn: Any = None


@worker_process_init.connect
def _connect(**_kw: Any) -> None:
    global _conn
    _conn = psycopg.connect(os.environ["BARE_DSN"], autocommit=True)


@app.task(name="bare.noop_insert")
def noop_insert(i: int) -> None:
    global _conn
    if _conn is None:
        _connect()
    _conn.execute("INSERT INTO bare_rows (i) VALUES (%s)", (i,))
