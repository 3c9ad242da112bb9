"""Offline tools: ``banditq replay`` of a cost table and ``banditq ope``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import _client, _fail, cli


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
    from app.offline.replay import replay as run_replay
    from app.offline.tables import load_table
    from tasks.errors import InputError

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
    from app.offline.ope import evaluate, load_campaign_log
    from app.policies.base import arm_positions
    from app.policies.registry import make_policy
    from models import Arm
    from tasks.errors import NotFoundError

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
            arm_values=arms,
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
