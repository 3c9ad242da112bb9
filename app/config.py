"""Configuration read from ``BANDITQ_*`` environment variables at start-up.

Nothing is read at import time: :func:`Settings.from_env` is called by the client, the CLI and
the worker when they start, so tests and embedding programs can set the environment first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from tasks.errors import ConfigError

#: Environment variable -> (setting name, help text). The CLI prints this table in ``--help``.
ENV_VARS: dict[str, tuple[str, str]] = {
    "BANDITQ_DATABASE_URL": (
        "database_url",
        "SQLAlchemy URL of the database (default: SQLite file under BANDITQ_HOME)",
    ),
    "BANDITQ_BROKER_URL": (
        "broker_url",
        "kombu/Celery broker URL (default: a filesystem transport under BANDITQ_HOME)",
    ),
    "BANDITQ_HOME": (
        "home",
        "folder of the embedded default (default: this user's data folder, "
        "~/.local/share/banditq on Linux; `banditq status` prints it)",
    ),
    "BANDITQ_QUEUE": ("queue", "Celery queue that carries trials (default: banditq.trials)"),
    "BANDITQ_MAX_PAYLOAD_BYTES": ("max_payload_bytes", "largest instance payload accepted"),
    "BANDITQ_SNAPSHOT_EVERY": ("snapshot_every", "policy snapshot every N results"),
    "BANDITQ_SNAPSHOT_SECONDS": (
        "snapshot_seconds",
        "and at most one snapshot per campaign every S seconds (default 10; a restart replays "
        "the results since the last one; smooth-ts state is ~0.7 MB)",
    ),
    "BANDITQ_SWEEP_SECONDS": ("sweep_seconds", "scheduler safety sweep interval (seconds)"),
    "BANDITQ_LEASE_SECONDS": (
        "lease_seconds",
        "lease on a running trial (default 300): it starts at the worker's first heartbeat "
        "and heartbeats renew it; a trial silent for this long is re-issued",
    ),
    "BANDITQ_WORKER_KINDS": (
        "worker_kinds",
        "trial kinds this worker runs, comma-separated (default: every kind installed here); "
        "a worker consumes only its kinds' queues, so it never receives a trial it cannot run",
    ),
    "BANDITQ_EVICT_SECONDS": (
        "evict_seconds",
        "a campaign with nothing in flight or pending for this long is snapshotted and let go "
        "from the scheduler's memory (default 300; loaded again when it gets work)",
    ),
    "BANDITQ_QUEUE_SECONDS": (
        "queue_seconds",
        "how long a published trial may wait in the queue before it starts (default 21600, "
        "six hours; longer when a campaign's trials have wall-time limits): queued time "
        "never counts against the running lease",
    ),
    "BANDITQ_METRICS_PORT": ("metrics_port", "scheduler's Prometheus metrics port (0 = off)"),
    "BANDITQ_WORKER_METRICS_PORT": (
        "worker_metrics_port",
        "a worker's Prometheus metrics port (0 = off): trials, running, duration histogram",
    ),
    "BANDITQ_WORKER_ANNOUNCE_SECONDS": (
        "announce_seconds",
        "workers announce their device class every S seconds (default 30); the scheduler "
        "routes device-'auto' inference trials only to classes heard from within 4 S",
    ),
    "BANDITQ_KERNEL_CACHE_BYTES": (
        "kernel_cache_bytes",
        "per worker process, the bytes of prepared matrices kept for later trials of the same "
        "system (least recently used evicted first; default 1 GiB)",
    ),
    "BANDITQ_STORE_URL": (
        "store_url",
        "array store for large matrices and vectors: a postgresql+psycopg:// URL or "
        "file:///shared/dir (default: the database when it is PostgreSQL, else BANDITQ_HOME/store)",
    ),
    "BANDITQ_INLINE_BYTES": (
        "inline_bytes",
        "systems up to this many bytes of JSON travel inside the message (default 65536); "
        "larger ones go to the array store and the message carries a reference",
    ),
    "BANDITQ_MAX_STORED_BYTES": (
        "max_stored_bytes",
        "largest system accepted into the array store (default 17179869184, 16 GiB)",
    ),
    "BANDITQ_WORKER_CACHE_BYTES": (
        "worker_cache_bytes",
        "a worker host's cache of stored arrays by hash, in bytes (LRU; default 2 GiB)",
    ),
    "BANDITQ_SCHEDULER_BLAS_THREADS": (
        "scheduler_blas_threads",
        "BLAS threads of the scheduler's policies (default 1: a decision's matrices are "
        "small, and idle BLAS threads spin on cores the workers need; more helps only the "
        "refits of smooth-ts with 3 context features, on a host of its own)",
    ),
    "BANDITQ_WORKER_BLAS_THREADS": (
        "worker_blas_threads",
        "BLAS threads of each worker pool process (numpy/scipy; default 1: the solver "
        "kernels are sparse and vector operations, where a second thread gains little and "
        "its spin-waiting takes a core from the other pool processes, the scheduler and the "
        "database; torch keeps its own thread setting)",
    ),
    "BANDITQ_WORKER_PREFETCH": (
        "worker_prefetch",
        "trials a worker slot holds beyond the one it runs (default 1: none waits behind a "
        "long trial); 2 hands a chain of short steps (SolutionOf) from one to the next "
        "without a broker round trip",
    ),
    "BANDITQ_WORKER_POOL": (
        "worker_pool",
        "prefork (default): each trial runs in a pool process (a crash or a hard time limit "
        "ends only that process). threads: one trial at a time in a thread of the worker "
        "process, with no process hand-off between trials (~1.5 ms less per trial, for "
        "chains of short solves; run more workers for more slots); a trial past its "
        "wall-time limit gets SoftTimeLimitExceeded when it next runs Python code, and one "
        "still running 10 s later is failed and the worker exits for its supervisor to "
        "restart it",
    ),
    "BANDITQ_CHAIN_WAIT_SECONDS": (
        "chain_wait_seconds",
        "how long a worker waits for the earlier solution a chained instance starts from "
        "(its x0 or right-hand side given as SolutionOf) before failing the trial "
        "(default 120)",
    ),
    "BANDITQ_DASHBOARD_TOKEN": (
        "dashboard_token",
        "when set, `banditq dashboard` requires this token on every request (open it once "
        "with ?token=..., or send Authorization: Bearer ...); default: no token",
    ),
    "BANDITQ_QUEUE_TYPE": (
        "queue_type",
        "classic (default) or quorum: replicated RabbitMQ quorum queues for trials, results "
        "and wake-ups (publisher confirms are then always on; use a new BANDITQ_QUEUE name, "
        "an existing queue cannot change type)",
    ),
    "BANDITQ_CONSUMER_TIMEOUT": (
        "consumer_timeout",
        "the broker's delivery-acknowledgement timeout in seconds (RabbitMQ consumer_timeout, "
        "default 1800): campaigns whose max_trial_seconds exceed half of it are acknowledged "
        "on receipt and protected by the lease and heartbeats instead",
    ),
    "BANDITQ_DURABLE_DECISIONS": (
        "durable_decisions",
        "1 = the scheduler's decision transactions wait for PostgreSQL's WAL flush. Default 0: "
        "they do not (results always do, before their messages are acknowledged), so a "
        "database crash may lose the last ~0.6 s of decisions; those instances are decided "
        "again and results of the lost trials are refused as unknown",
    ),
    "BANDITQ_PUBLISH_CONFIRMS": (
        "publish_confirms",
        "1 = wait for a RabbitMQ confirm per message (about 2x slower publishing; the outbox "
        "and lease reconciler recover lost messages either way). Default 0",
    ),
}


#: Celery pools a worker may run (``BANDITQ_WORKER_POOL``)
WORKER_POOLS = ("prefork", "threads")


#: database URL schemes banditq runs on
DATABASE_SCHEMES = ("postgresql+psycopg", "postgresql", "sqlite")


def check_urls(database_url: str, broker_url: str) -> None:
    """A ConfigError saying what to write when a URL cannot work (a one-line CLI error, not
    a traceback from deep inside SQLAlchemy or kombu)."""
    from kombu.transport import TRANSPORT_ALIASES
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = redact_url(database_url)
    try:
        scheme = make_url(database_url).drivername
    except ArgumentError:
        scheme = ""
    if scheme not in DATABASE_SCHEMES:
        raise ConfigError(
            f"BANDITQ_DATABASE_URL={shown!r} is not a database URL banditq can use: write "
            "postgresql+psycopg://user:password@host:5432/dbname (or sqlite:///path/banditq.db)"
        )
    broker = broker_url.split("://", 1)[0] if "://" in broker_url else ""
    if broker not in TRANSPORT_ALIASES and broker != "filesystem":
        raise ConfigError(
            f"BANDITQ_BROKER_URL={redact_url(broker_url)!r} is not a broker URL: write "
            "amqp://user:password@host:5672// (RabbitMQ), or leave it unset for the embedded "
            "broker"
        )


def _default_home() -> Path:
    """``BANDITQ_HOME``, else this user's data folder (``~/.local/share/banditq`` on Linux):
    the same embedded database whichever folder a command runs in."""
    if os.environ.get("BANDITQ_HOME"):
        return Path(os.environ["BANDITQ_HOME"]).resolve()
    from platformdirs import user_data_path

    return user_data_path("banditq", appauthor=False)


@dataclass(frozen=True)
class Settings:
    """Immutable run-time settings; build with :meth:`from_env` or pass values explicitly."""

    home: Path = field(default_factory=_default_home)
    database_url: str = ""
    broker_url: str = ""
    queue: str = "banditq.trials"
    max_payload_bytes: int = 16 * 1024 * 1024
    snapshot_every: int = 200
    snapshot_seconds: float = 10.0
    sweep_seconds: float = 5.0
    lease_seconds: float = 300.0
    queue_seconds: float = 21600.0
    evict_seconds: float = 300.0
    worker_kinds: str = ""
    metrics_port: int = 0
    worker_metrics_port: int = 0
    publish_confirms: int = 0
    durable_decisions: int = 0
    consumer_timeout: float = 1800.0
    queue_type: str = "classic"
    announce_seconds: float = 30.0
    kernel_cache_bytes: int = 1 << 30
    store_url: str = ""
    inline_bytes: int = 64 * 1024
    max_stored_bytes: int = 16 << 30
    worker_cache_bytes: int = 2 << 30
    chain_wait_seconds: float = 120.0
    worker_prefetch: int = 1
    worker_pool: str = "prefork"
    scheduler_blas_threads: int = 1
    worker_blas_threads: int = 1
    dashboard_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        # Fill the embedded defaults from ``home`` so that one variable moves everything.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'banditq.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", "filesystem://")
        check_urls(self.database_url, self.broker_url)
        if self.queue_type not in ("classic", "quorum"):
            raise ConfigError(
                f"BANDITQ_QUEUE_TYPE={self.queue_type!r}: must be 'classic' or 'quorum'"
            )
        if self.worker_pool not in WORKER_POOLS:
            raise ConfigError(
                f"BANDITQ_WORKER_POOL={self.worker_pool!r}: must be one of "
                f"{', '.join(WORKER_POOLS)}"
            )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``BANDITQ_*`` variables; explicit non-None ``overrides`` win."""
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for env, (name, _help) in ENV_VARS.items():
            raw = os.environ.get(env)
            if raw is None or raw == "":
                continue
            kwargs[name] = _coerce(env, raw, str(types[name]))
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        if "home" in kwargs:
            kwargs["home"] = Path(str(kwargs["home"])).resolve()
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The ``BANDITQ_*`` variables that make :meth:`from_env` rebuild these settings
        (for child processes: every setting travels, not a hand-kept subset)."""
        return {env: str(getattr(self, name)) for env, (name, _help) in ENV_VARS.items()}

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    def broker_transport_options(self) -> dict[str, object]:
        """Transport options; the filesystem transport needs its folders, AMQP needs confirms."""
        if self.embedded_broker:
            folder = self.broker_folder
            for sub in ("queue", "control", "processed"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            return {
                "data_folder_in": str(folder / "queue"),
                "data_folder_out": str(folder / "queue"),
                "control_folder": str(folder / "control"),
                "processed_folder": str(folder / "processed"),
                # Virtual transports poll their store; keep the wake-up latency low.
                "polling_interval": 0.002,
            }
        confirms = self.publish_confirms or self.queue_type == "quorum"
        if self.broker_url.startswith(("amqp", "pyamqp")) and confirms:
            # Synchronous per message in py-amqp (shared/CELERY.md: ~3,300/s -> ~510/s).
            return {"confirm_publish": True}
        return {}

    def redacted(self) -> dict[str, str]:
        """Settings for logs and ``status``: credentials in URLs are masked."""
        return {
            "database_url": redact_url(self.database_url),
            "broker_url": redact_url(self.broker_url),
            "queue": self.queue,
            "home": str(self.home),
        }


def _coerce(env: str, raw: str, typ: str) -> object:
    try:
        if "int" in typ:
            return int(raw)
        if "float" in typ:
            return float(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{env}={raw!r} is not a valid {typ}; `banditq --help` lists the variables"
        ) from exc
    return raw


def redact_url(url: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
