"""The guide cannot drift from the code: every code block of the README and of ``docs/`` runs
here, or (a shell line that starts a service or installs something) names only commands,
options, make targets, variables and files that exist.

- Python blocks run page by page, each page's blocks in order in one fresh interpreter, the
  way a reader pastes them: the README and the quickstart on the embedded default (no
  servers), the guide on PostgreSQL + RabbitMQ, each against a real scheduler and workers.
- SQL blocks run on that PostgreSQL database after the guide's pages filled it.
- Shell lines of the quickstart and the README that read (``banditq status``, ``report``,
  ``results``) run for real; every other shell line is checked against the CLI's own command
  tree, the Makefile, ``app.config.ENV_VARS`` and the repository's files.
- TOML blocks parse."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer

from app.cli import cli
from app.client import Client
from app.config import ENV_VARS, Settings
from app.dev.local import LocalCluster
from tests.integration.test_plugin_distribution import krylov_installed  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LANGUAGES = {"python", "bash", "sql", "toml", "text"}
#: the guide's pages that hold Python, in the order a reader meets them (later pages may read
#: what earlier ones created, as the SQL page reads ``heat-run-7``)
GUIDE = [
    "guide/solver-campaigns.md",
    "guide/solver-selection.md",
    "guide/ask-tell.md",
    "guide/store-and-chains.md",
    "guide/plugins.md",
    "guide/inference.md",
]
#: shell commands that read and return: run for real where a tutorial shows them
READ_COMMANDS = {"status", "report", "results"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str


def _blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().splitlines()
    page = str(path.relative_to(ROOT))
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            out.append(Block(page, i + 1, m.group(1), "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return out


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _all_blocks() -> list[Block]:
    return [b for p in _pages() for b in _blocks(p)]


def _python_of(page: str) -> str:
    return "\n".join(b.code for b in _blocks(ROOT / page) if b.language == "python")


def _run_python(code: str, settings: Settings, cwd: Path, timeout: float = 900) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env.update(settings.to_env())
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


# ------------------------------------------------------------------ the shell lines
def _commands() -> dict[tuple[str, ...], set[str]]:
    """Every ``banditq`` command path and its option names."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        found[path] = {o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("-")}
        found[path] |= {"--help", "--debug"}
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli), ())
    return found


def _check_banditq(words: list[str], commands: dict[tuple[str, ...], set[str]]) -> str | None:
    path: tuple[str, ...] = ()
    rest = words[1:]
    while rest and (*path, rest[0]) in commands:
        path, rest = (*path, rest[0]), rest[1:]
    if commands.get(path) is None or (path == () and rest and not rest[0].startswith("-")):
        return f"no command `banditq {' '.join(words[1:2])}`"
    for w in rest:
        if w.startswith("-") and w.split("=")[0] not in commands[path]:
            return f"`banditq {' '.join(path)}` has no option {w}"
    return None


def _check_shell_line(line: str, commands: dict[tuple[str, ...], set[str]]) -> str | None:
    words = shlex.split(line, comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before a command
        var = words.pop(0).split("=")[0]
        if var.startswith("BANDITQ_") and var not in ENV_VARS:
            return f"unknown variable {var}"
    if not words:
        return None
    head = words[0]
    if head == "export":
        var = words[1].split("=")[0]
        return None if var in ENV_VARS else f"unknown variable {var}"
    if head == "banditq":
        return _check_banditq(words, commands)
    if head == "make":
        targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M)
        return None if words[1] in targets else f"no make target {words[1]}"
    if head == "pip" and words[1] == "install":
        local = [w for w in words[2:] if w.startswith("./")]
        missing = [w for w in local if not (ROOT / w).exists()]
        return f"no folder {missing[0]}" if missing else None
    if head == "python":
        script = next(w for w in words[1:] if not w.startswith("-"))
        return None if (ROOT / script).exists() else f"no file {script}"
    return f"a shell line this test does not know how to check: {line!r}"


def test_every_code_block_says_its_language() -> None:
    bad = [f"{b.page}:{b.line}" for b in _all_blocks() if b.language not in LANGUAGES]
    assert not bad, f"code blocks without a known language ({sorted(LANGUAGES)}): {bad}"


def test_shell_lines_name_real_commands_options_targets_and_files() -> None:
    commands = _commands()
    problems = []
    for b in _all_blocks():
        if b.language != "bash":
            continue
        for k, line in enumerate(b.code.splitlines()):
            if line.strip():
                why = _check_shell_line(line, commands)
                if why:
                    problems.append(f"{b.page}:{b.line + 1 + k}: {why}")
    assert not problems, "\n".join(problems)


def test_toml_blocks_parse() -> None:
    tomls = [b for b in _all_blocks() if b.language == "toml"]
    assert tomls
    for b in tomls:
        tomllib.loads(b.code)


def test_the_python_pages_are_the_ones_this_test_runs() -> None:
    with_python = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if any(b.language == "python" for b in _blocks(p))
    }
    assert with_python == {*GUIDE, "quickstart.md"}


# ------------------------------------------------------------------ the pages, run
def test_readme_and_quickstart_run_on_the_embedded_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", sweep_seconds=1.0)
    with LocalCluster(settings, workers=2) as cluster:
        for page in ("README.md", "docs/quickstart.md"):
            stdout = _run_python(_python_of(page), settings, tmp_path)
            assert "60 trials" in stdout, (page, stdout)
        cluster.check()
    # the tutorial's reading commands, as shown
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env.update(settings.to_env())
    shown = [
        line
        for b in _blocks(DOCS / "quickstart.md") + _blocks(ROOT / "README.md")
        if b.language == "bash"
        for line in b.code.splitlines()
        if line.startswith("banditq ") and line.split()[1] in READ_COMMANDS
    ]
    assert len(shown) >= 3
    for line in shown:
        words = shlex.split(line, comments=True)
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, (line, out.stdout[-1000:], out.stderr[-2000:])
    assert (tmp_path / "first-steps.html").stat().st_size > 10_000


@pytest.mark.timeout(1200)
def test_the_guide_runs_on_postgresql_and_rabbitmq(
    krylov_installed: None,  # noqa: F811 - the plugins page's example distribution
    pg_settings: Settings,
    tmp_path: Path,
) -> None:
    failures: list[str] = []
    with LocalCluster(pg_settings, workers=2) as cluster:
        for page in GUIDE:
            try:
                _run_python(_python_of(f"docs/{page}"), pg_settings, tmp_path)
            except AssertionError as exc:
                failures.append(f"{page}: {exc}")
        cluster.check()
    assert not failures, "\n\n".join(failures)
    client = Client(settings=pg_settings)
    sql = [b for b in _all_blocks() if b.language == "sql"]
    assert sql
    with client.engine.connect() as conn:
        for b in sql:
            for statement in (s for s in b.code.split(";") if s.strip().strip("-").strip()):
                rows = conn.execute(sa.text(statement)).fetchall()
                if "heat-run-7" in statement:
                    assert rows, f"{b.page}:{b.line}: no rows for a campaign the guide made"


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("banditq reprot x", "no command"),
        ("banditq report x --pdf", "no option --pdf"),
        ("make deploy", "no make target"),
        ("export BANDITQ_NOPE=1", "unknown variable"),
        ("python benchmarks/nope.py", "no file"),
        ("curl http://x", "does not know"),
    ],
)
def test_the_shell_line_check_catches_drift(line: str, complaint: str) -> None:
    why = _check_shell_line(line, _commands())
    assert why is not None and complaint in why
