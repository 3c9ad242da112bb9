"""Reading campaigns: ``banditq status``, ``results``, ``report``, ``dashboard``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.base import _client, _fail, _settings, cli
from app.config import Settings


@cli.command()
def status(
    campaign: Annotated[str | None, typer.Argument(help="campaign name (omit to list)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Without a name: every campaign as a table (kind, policy, state, progress, last
    activity; a broken campaign with the reason). With one: its progress, trials per
    second, queue depth and per-arm costs."""
    from app.client.status import campaigns_overview
    from tasks.errors import NotFoundError

    client = _client()
    if campaign is None:
        rows = campaigns_overview(client)
        if as_json:
            typer.echo(json.dumps(rows))
            return
        _overview_table(rows, client.settings.redacted()["database_url"])
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
    if st["state"] == "broken":
        con.print(f"[bold red]broken[/]: {st['broken_reason']}")
    con.print(
        f"[bold]{st['campaign']}[/] kind={st['kind']} policy={st['policy']} state={st['state']} "
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


def _overview_table(rows: list[dict[str, Any]], database: str) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"database: {database}")
    if not rows:
        con.print("no campaigns")
        return
    t = Table("campaign", "kind", "policy", "state", "done / all", "failed", "last activity")
    for r in rows:
        state = r["state"] if r["state"] != "broken" else f"[red]broken[/]: {r['broken_reason']}"
        t.add_row(
            r["campaign"],
            r["kind"],
            r["policy"],
            state,
            f"{r['done']} / {r['instances']}",
            str(r["failed"]),
            (r["last_activity"] or "-")[:19].replace("T", " "),
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
    from tasks.errors import NotFoundError

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
            from app.client.rows import tidy

            flat = tidy(rows)  # ctx.<feature> and arm.<parameter> columns, not JSON cells
            cols = list(flat[0]) if flat else ["campaign", "instance_id", "trial_id"]
            w = csv.DictWriter(out, fieldnames=cols)
            w.writeheader()
            for r in flat:
                w.writerow(
                    {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
                )
    finally:
        if output:
            out.close()


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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print the summary (every headline number with its 95% interval, and notes "
            "where the data does not support one) as one JSON object instead of the HTML",
        ),
    ] = False,
) -> None:
    """Write a self-contained HTML report of a campaign (plots embedded; opens with no
    network): a summary with the estimated speed-up over the baseline arm, cumulative cost
    against the baseline and best fixed arm (off-policy estimates, or exact for `table`
    campaigns), arm against context with the policy's current best arm, cost per arm,
    decisions by reason, propensities, failures and workers. Reads only the views of
    `banditq db grant-reader`."""
    from app.report.data import load
    from app.report.html import write_report
    from tasks.errors import NotFoundError

    engine = _reader_engine(_settings())
    try:
        data = load(engine, campaign)
    except NotFoundError as exc:
        _fail(f"{exc}; `banditq status` lists the campaigns")
    if as_json:
        from app.report.summary import summary

        typer.echo(json.dumps(summary(data)))
        return
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
    Set BANDITQ_DASHBOARD_TOKEN to require a token on every request; bound to any address
    but loopback it always needs one (generated and printed when the variable is unset).
    Requests naming another host than the bound address are refused (DNS rebinding)."""
    import secrets

    import uvicorn

    from app.dashboard.server import LOOPBACK_HOSTS, allowed_hosts, create_app

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
    token = s.dashboard_token or None
    if host not in LOOPBACK_HOSTS and token is None:
        # never exposed without a token: one is made for this run and printed once
        token = secrets.token_urlsafe(24)
        typer.echo(
            f"no BANDITQ_DASHBOARD_TOKEN: generated one for this run; open "
            f"http://{host}:{port}/?token={token}",
            err=True,
        )
    app = create_app(engine, token=token, refresh_s=refresh, hosts=allowed_hosts(host))
    typer.echo(f"banditq dashboard on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


campaign_cli = typer.Typer(
    help="A campaign's lifecycle: pause, resume, cancel, delete, retry (each safe while the "
    "scheduler runs).",
    no_args_is_help=True,
)
cli.add_typer(campaign_cli, name="campaign")


def _lifecycle(action: str, name: str) -> Any:
    from app.client import lifecycle
    from tasks.errors import InputError, NotFoundError

    ops = {
        "pause": lifecycle.pause,
        "resume": lifecycle.resume,
        "cancel": lifecycle.cancel,
        "delete": lifecycle.delete_campaign,
        "retry": lifecycle.retry_failed,
    }
    try:
        return ops[action](_client(), name)
    except NotFoundError as exc:
        _fail(f"{exc}; `banditq status` lists the campaigns")
    except InputError as exc:
        _fail(exc.message)


@campaign_cli.command("pause")
def campaign_pause(name: Annotated[str, typer.Argument(help="campaign name")]) -> None:
    """Refuse new submits; what was submitted still runs."""
    typer.echo(f"{name}: {_lifecycle('pause', name)}")


@campaign_cli.command("resume")
def campaign_resume(name: Annotated[str, typer.Argument(help="campaign name")]) -> None:
    """Make a paused or broken campaign active again (fix what broke it first)."""
    typer.echo(f"{name}: {_lifecycle('resume', name)}")


@campaign_cli.command("cancel")
def campaign_cancel(name: Annotated[str, typer.Argument(help="campaign name")]) -> None:
    """Pause and withdraw what has not started (pending instances, queued trials)."""
    out = _lifecycle("cancel", name)
    typer.echo(
        f"{name}: paused; withdrew {out['instances_withdrawn']} pending instance(s) and "
        f"{out['trials_withdrawn']} queued trial(s)"
    )


@campaign_cli.command("delete")
def campaign_delete(
    name: Annotated[str, typer.Argument(help="campaign name")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete the campaign and its records; its arrays are left for `banditq store gc`."""
    if not yes and not typer.confirm(f"delete campaign {name!r} and all its results?"):
        _fail("not deleted")
    _lifecycle("delete", name)
    typer.echo(f"{name}: deleted (run `banditq store gc` to free arrays only it used)")


@campaign_cli.command("retry")
def campaign_retry(name: Annotated[str, typer.Argument(help="campaign name")]) -> None:
    """Put the failed instances back to pending (decided again as new trials)."""
    typer.echo(f"{name}: {_lifecycle('retry', name)} failed instance(s) back to pending")
