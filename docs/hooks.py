"""MkDocs hooks: reference pages generated from the code, so they cannot drift from it.

``{{ settings_table }}`` becomes the table of every ``BANDITQ_*`` variable (from
``app.config.ENV_VARS`` and the defaults of ``Settings``); ``{{ cli_commands }}`` the list of
every ``banditq`` command with its help (from the Typer application)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any


def _settings_table() -> str:
    from app.config import ENV_VARS, Settings

    defaults = {f.name: f for f in dataclasses.fields(Settings)}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for env, (name, help_text) in ENV_VARS.items():
        f = defaults[name]
        if f.default is not dataclasses.MISSING:
            default = repr(f.default) if f.default != "" else "(derived)"
        else:
            default = "(derived)"
        if name == "dashboard_token":
            default = "(none)"
        rows.append(f"| `{env}` | `{default}` | {help_text.replace('|', '/')} |")
    return "\n".join(rows)


def _cli_commands() -> str:
    import typer

    from app.cli import cli

    root = typer.main.get_command(cli)
    lines: list[str] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):  # a group (typer may bring its own click)
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], [*path, name])
            return
        ctx = cmd.context_class(cmd, info_name=" ".join(path))
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        usage = re.sub(r"[{](\w+)[}]", lambda m: m.group(1).upper(), usage)
        summary = (cmd.help or "").strip().replace("\n\n", "\n").replace("\n", " ")
        lines.append(f"### `{' '.join(path)} {usage}`\n\n{summary}\n")
        options = [
            f"- `{', '.join(o.opts)}`: {getattr(o, 'help', '') or ''}"
            for o in cmd.params
            if o.opts[0].startswith("-") and "--help" not in o.opts
        ]
        if options:
            lines.append("\n".join(options) + "\n")

    walk(root, ["banditq"])
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "{{ settings_table }}" in markdown:
        markdown = markdown.replace("{{ settings_table }}", _settings_table())
    if "{{ cli_commands }}" in markdown:
        markdown = markdown.replace("{{ cli_commands }}", _cli_commands())
    return markdown
