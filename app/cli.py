"""The ``banditq`` command line."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from app.config import ENV_VARS, Settings

ENV_HELP = (
    "Environment variables (read at start-up):\n\n"
    + "\n\n".join(f"  {k}: {h}" for k, (_n, h) in ENV_VARS.items())
    + "\n\n  BANDITQ_DEBUG: 1 = print the full traceback of an error (same as --debug)"
    + "\n\nErrors print one line and exit with status 2; --debug (anywhere on the command "
    "line) shows the traceback."
)

cli = typer.Typer(
    help="banditq: learn the best solver or inference setting per instance, online.\n\n" + ENV_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema commands.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
store_cli = typer.Typer(
    help="The array store of large matrices and vectors (BANDITQ_STORE_URL).",
    no_args_is_help=True,
)
cli.add_typer(store_cli, name="store")


def _duration(text: str) -> Any:
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = (float(text[:-1]), text[-1]) if text[-1] in units else (float(text), "s")
    except (ValueError, IndexError):
        _fail(f"--older-than {text!r}: use a number with s, m, h or d, e.g. 12h")
    return timedelta(seconds=value * units[unit])


@store_cli.command("gc")
def store_gc(
    older_than: Annotated[
        str, typer.Option(help="only blobs older than this (s, m, h, d), e.g. 1h")
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Remove stored blobs that no instance or result refers to (and older than --older-than,
    so an upload whose instance is being submitted is kept)."""
    from app.storeadmin import gc

    out = gc(_settings(), _duration(older_than))
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"store {out['store']}: removed {out['removed']} blob(s), {out['bytes']:,} bytes; "
        f"{out['kept']} referenced blob(s) kept"
    )


@store_cli.command("stats")
def store_stats(
    as_json: Annotated[bool, typer.Option("--json", help="JSON rows on stdout")] = False,
) -> None:
    """Stored blobs and bytes per campaign (a blob shared by many instances counts once)."""
    from app.storeadmin import describe, stats

    s = _settings()
    rows = stats(s)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"store {describe(s)}")
    for r in rows:
        typer.echo(f"{r['campaign']:<40} {r['blobs']:>8} blob(s) {r['bytes']:>16,} bytes")


def _settings() -> Settings:
    return Settings.from_env()  # a malformed variable raises ConfigError, handled in main()


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations in place (existing data is kept). URL: BANDITQ_DATABASE_URL."""
    from app import db

    s = _settings()
    db.upgrade(s.database_url, revision)
    typer.echo(f"database {s.redacted()['database_url']} at revision {revision}")


@db_cli.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. base")],
) -> None:
    """Revert migrations down to REVISION."""
    from app import db

    db.downgrade(_settings().database_url, revision)
    typer.echo(f"database at revision {revision}")


@db_cli.command("grant-reader")
def db_grant_reader(
    role: Annotated[str, typer.Argument(help="role to create or update (lower-case identifier)")],
    login: Annotated[
        bool, typer.Option(help="let the role log in (set its password yourself)")
    ] = False,
) -> None:
    """Create a read-only PostgreSQL role for analysts: SELECT on the views, nothing else."""
    from app import db

    try:
        db.grant_reader(_settings().database_url, role, login=login)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"role {role}: SELECT on {', '.join(db.READER_VIEWS)}; no other privileges")


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
    from app.clierrors import check_broker
    from app.scheduler import Scheduler

    _logging(loglevel)
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
            "--concurrency", "-c", help="pool processes (default: one per GPU, else per CPU)"
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
    """Run a worker daemon consuming trials (Celery prefork; JSON only; late ack)."""
    from app.clierrors import check_broker
    from workers.daemon import run_worker

    _logging(loglevel)
    s = _settings()
    check_broker(s.broker_url, s.broker_transport_options())
    port = metrics_port if metrics_port is not None else s.worker_metrics_port
    run_worker(s, concurrency=concurrency, name=name, loglevel=loglevel, metrics_port=port)


def _client() -> Any:
    from app.client import Client
    from app.errors import SchemaMissingError

    try:
        return Client()
    except SchemaMissingError as exc:
        _fail(str(exc))


@cli.command()
def status(
    campaign: Annotated[str | None, typer.Argument(help="campaign name (omit to list)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Show a campaign's progress, trials per second, queue depth and per-arm costs."""
    from app.errors import NotFoundError

    client = _client()
    if campaign is None:
        names = client.campaigns()
        typer.echo(json.dumps(names) if as_json else "\n".join(names) or "no campaigns")
        return
    try:
        st = client.campaign(campaign).status()
    except NotFoundError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(st))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(
        f"[bold]{st['campaign']}[/] kind={st['kind']} policy={st['policy']} "
        f"updates={st['policy_updates']} trials/s(1 min)={st['trials_per_s_last_minute']} "
        f"queue depth={st['queue_depth']}"
    )
    con.print(f"instances: {st['instances']}  trials: {st['trials']}")
    t = Table("arm", "trials", "mean cost")
    for a in st["arms"]:
        t.add_row(
            a["arm"],
            str(a["count"]),
            f"{a['mean_cost']:.1f}" if a["mean_cost"] is not None else "-",
        )
    con.print(t)


@cli.command()
def results(
    campaign: Annotated[str, typer.Argument(help="campaign name")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
) -> None:
    """Export the campaign's rows of the trial_results view."""
    from app.errors import NotFoundError

    if fmt not in ("csv", "json"):
        _fail(f"--format must be csv or json, got {fmt!r}")
    try:
        rows = _client().campaign(campaign).results()
    except NotFoundError as exc:
        _fail(str(exc))
    out = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump(rows, out, default=str)
            out.write("\n")
        else:
            cols = list(rows[0]) if rows else ["campaign", "instance_id", "trial_id"]
            w = csv.DictWriter(out, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow(
                    {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
                )
    finally:
        if output:
            out.close()


@cli.command()
def replay(
    table: Annotated[
        Path,
        typer.Argument(
            help=".npz with contexts (T x d), arms (K or K x p), "
            "costs (T x K); optional context_names, arm_names"
        ),
    ],
    policy: Annotated[str, typer.Option(help="policy name (see `banditq policies`)")] = "default",
    seed: Annotated[int, typer.Option(help="policy seed")] = 0,
    repeats: Annotated[int, typer.Option(help="independent seeds, averaged")] = 1,
    config: Annotated[str | None, typer.Option(help="policy_config as JSON")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Replay a full-information cost table in file order; the policy sees only the cost of
    the arm it chose. Reports mean cost against the per-instance oracle and best fixed arm."""
    from app.errors import InputError
    from app.replay import replay as run_replay
    from app.tables import load_table

    try:
        tab = load_table(table)
        cfg = json.loads(config) if config else None
        if repeats < 1:
            raise InputError("repeats", "must be >= 1")
        out = run_replay(tab, policy, seed=seed, repeats=repeats, config=cfg)
    except (InputError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(out))
        return
    for k, v in out.items():
        typer.echo(f"{k:>22}: {v:.4f}" if isinstance(v, float) else f"{k:>22}: {v}")


@cli.command()
def ope(
    campaign: Annotated[str, typer.Argument(help="campaign whose logged decisions to use")],
    policy: Annotated[str, typer.Option(help="the policy to evaluate")] = "default",
    config: Annotated[str | None, typer.Option(help="its policy_config as JSON")] = None,
    seed: Annotated[int, typer.Option(help="its seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Off-policy evaluation: estimate another policy's mean cost from the logged decisions
    and propensities (IPS, self-normalized IPS, doubly robust; 95% intervals), and say when
    the propensities are too small to trust."""
    from app.errors import NotFoundError
    from app.ope import evaluate, load_campaign_log
    from app.policies.base import arm_positions
    from app.policies.registry import make_policy
    from models import Arm

    client = _client()
    try:
        with client.Session() as s:
            camp, log, keys = load_campaign_log(s, campaign)
            arms = [
                a.value for a in s.query(Arm).filter(Arm.campaign_id == camp.id).order_by(Arm.index)
            ]
        target = make_policy(
            policy,
            len(arms),
            len(camp.context_features),
            arms=arm_positions(arms),
            seed=seed,
            config=json.loads(config) if config else None,
        )
        out = evaluate(target, log, keys)
    except (NotFoundError, ValueError) as exc:
        _fail(str(exc))
    out = {"campaign": campaign, "policy": policy, "logging_policy": camp.policy, **out}
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"{policy} on {out['rounds']} logged rounds of {campaign} "
        f"(logged by {camp.policy}, mean cost {out['logged_mean_cost']:.2f}):"
    )
    for k in ("ips", "snips", "dr"):
        lo, hi = out[f"{k}_ci"]
        typer.echo(f"  {k:>6}: {out[k]:10.2f}   95% CI [{lo:.2f}, {hi:.2f}]")
    typer.echo(
        f"  effective sample size {out['effective_sample_size']:.0f}, smallest "
        f"propensity {out['min_propensity']:.3g}"
    )
    for w in out["warnings"]:
        typer.secho(f"  warning: {w}", fg="yellow")


@cli.command()
def policies() -> None:
    """List the installed policies and the distribution each comes from (``default`` is the
    best one measured; a kind may name its own)."""
    from app.plugins import POLICIES_GROUP

    _list_plugins(POLICIES_GROUP, _policy_doc)


@cli.command()
def kinds() -> None:
    """List the installed trial kinds and the distribution each comes from."""
    from app.plugins import KINDS_GROUP

    _list_plugins(KINDS_GROUP, _kind_doc)


def _first_line(cls: type) -> str:
    """The summary line of a class's docstring, else of its module's."""
    for obj in (cls, sys.modules.get(cls.__module__)):
        doc = (getattr(obj, "__doc__", None) or "").strip()
        if doc:
            return doc.splitlines()[0]
    return ""


def _policy_doc(name: str) -> str:
    from app.policies.registry import DEFAULT_POLICY, policy_class

    mark = "  (default)" if name == DEFAULT_POLICY else ""
    return _first_line(policy_class(name)) + mark


def _kind_doc(name: str) -> str:
    from tasks.kinds import get_kind

    kind = get_kind(name)
    extra = f"  (default policy: {kind.default_policy})" if kind.default_policy else ""
    return _first_line(type(kind)) + extra


def _list_plugins(group: str, describe: Callable[[str], str]) -> None:
    """One line per entry point: name, distribution and version, and its summary; one that
    fails to import is listed with the reason (and the exit status is 1)."""
    from app.plugins import PluginError, plugins

    failed = False
    for name, p in sorted(plugins(group).items()):
        try:
            text = describe(name)
        except PluginError as exc:
            text, failed = f"BROKEN: {exc.message}", True
        typer.echo(f"{name:16} {p.dist + ' ' + p.version:18} {text}")
    if failed:
        raise typer.Exit(1)


def _reader_engine(s: Settings) -> Any:
    """An engine on BANDITQ_DATABASE_URL that can read the reader views (a role made by
    `banditq db grant-reader` is enough; the schema is not checked or upgraded)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from app import db

    engine = db.make_engine(s.database_url)
    if engine.dialect.name == "sqlite" and not db.is_current(engine):
        db.upgrade(s.database_url)  # the embedded default upgrades itself, as the client does
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM campaign_overview WHERE 1 = 0")).all()
    except DBAPIError as exc:
        cause = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        if not any(w in cause for w in ("permission denied", "does not exist", "no such table")):
            raise  # a dead server, a wrong password: the generic one-line database error
        _fail(
            f"cannot read the reader views at {s.redacted()['database_url']} ({cause}); run "
            "`banditq db upgrade` (and `banditq db grant-reader ROLE` for a reader role)"
        )
    return engine


@cli.command()
def report(
    campaign: Annotated[str, typer.Argument(help="campaign name")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML file to write")] = Path(
        "report.html"
    ),
    png: Annotated[
        Path | None, typer.Option("--png", help="also write one PNG per plot into this folder")
    ] = None,
) -> None:
    """Write a self-contained HTML report of a campaign (plots embedded; opens with no
    network): a summary with the estimated speed-up over the baseline arm, cumulative cost
    against the baseline and best fixed arm (off-policy estimates, or exact for `table`
    campaigns), arm against context with the policy's current best arm, cost per arm,
    decisions by reason, propensities, failures and workers. Reads only the views of
    `banditq db grant-reader`."""
    from app.errors import NotFoundError
    from app.report.data import load
    from app.report.html import write_report

    engine = _reader_engine(_settings())
    try:
        data = load(engine, campaign)
    except NotFoundError as exc:
        _fail(f"{exc}; `banditq status` lists the campaigns")
    try:
        written = write_report(data, output, png)
    except OSError as exc:
        _fail(f"cannot write the report: {exc}")
    for path in written.values():
        typer.echo(str(path))


@cli.command()
def dashboard(
    host: Annotated[
        str, typer.Option(help="address to bind; 0.0.0.0 exposes it to the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    refresh: Annotated[float, typer.Option(help="seconds between live updates")] = 2.0,
) -> None:
    """Serve a read-only web dashboard of every campaign (live, no reload needed): a
    campaign list, and per campaign the report's plots and summary, CSV and JSON downloads.
    It needs only the role of `banditq db grant-reader` (point BANDITQ_DATABASE_URL at it).
    Set BANDITQ_DASHBOARD_TOKEN to require a token on every request."""
    import uvicorn

    from app.dashboard.server import create_app

    s = _settings()
    if refresh <= 0:
        _fail("--refresh must be > 0 seconds")
    import socket

    engine = _reader_engine(s)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            _fail(f"cannot serve on {host}:{port}: {exc.strerror}; choose another --port")
    app = create_app(engine, token=s.dashboard_token or None, refresh_s=refresh)
    if host not in ("127.0.0.1", "localhost", "::1") and not s.dashboard_token:
        typer.echo(f"warning: serving on {host} with no BANDITQ_DASHBOARD_TOKEN", err=True)
    typer.echo(f"banditq dashboard on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
    from app.demo import run_demo

    _logging("WARNING")
    code = run_demo(
        _settings(), instances=instances, workers=workers, policy=policy, seed=seed, timeout=timeout
    )
    raise typer.Exit(code)


def main() -> None:
    from app.clierrors import debug_enabled, describe

    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["BANDITQ_DEBUG"] = "1"
    try:
        cli()
    except Exception as exc:  # errors that say what to do, not a traceback
        line = describe(exc)
        if line is None or debug_enabled():
            raise
        typer.secho(f"error: {line} (details: --debug or BANDITQ_DEBUG=1)", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
    time.sleep(0)
