"""The layout shows the processes: imports go one way, and no part grows into a monolith.

Static (the import statements in the source, including those inside functions), so a lazy
import cannot hide a dependency the wrong way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> packages it must never import
FORBIDDEN = {
    "app.client": ("app.scheduler", "workers", "app.dev", "app.cli", "torch"),
    "app.scheduler": ("app.client", "workers", "app.dev", "app.cli", "app.offline"),
    "workers": ("app.client", "app.scheduler", "app.dev", "app.cli", "app.offline"),
    "tasks": ("app", "workers"),  # the ground: nothing above it
    "models": ("app", "tasks", "workers"),
    "app.policies": ("app.client", "app.scheduler", "workers", "app.dev", "app.cli"),
}
#: where the size limits hold (lines per module, lines per class)
SIZED = ("app/client", "app/scheduler", "workers")
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 250


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    folder = ROOT / package.replace(".", "/")
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield ".".join(rel.parts), path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from app import client` imports app.client
                yield node.lineno, f"{node.module}.{alias.name}"


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for _mod, path in _modules(package)
        for line, name in _imports(path)
        if any(_under(name, bad) for bad in FORBIDDEN[package])
    ]
    assert wrong == []


def test_kind_runners_live_on_the_worker_side() -> None:
    """A kind names its runner by import path; the path is a worker module (the client and
    scheduler load the kind, never the runner)."""
    from tasks.kinds import get_kind, kind_names

    for name in kind_names():
        kind = get_kind(name)
        runner = kind.runner
        if runner and type(kind).__module__.startswith("tasks."):  # built-in kinds
            assert runner.split(":")[0].startswith("workers."), (name, runner)


@pytest.mark.parametrize("folder", SIZED)
def test_no_module_or_class_grows_into_a_monolith(folder: str) -> None:
    big = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text()
        n = text.count("\n")
        if n > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    big.append(f"{path.relative_to(ROOT)}: class {node.name} {size} lines")
    assert big == []


def test_every_package_is_in_the_distribution() -> None:
    """pyproject's package list names every package (a missing one installs without it)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("app", "tasks", "workers", "models", "migrations")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set()
