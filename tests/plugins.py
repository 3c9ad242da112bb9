"""Install a plugin distribution for a test without pip: a ``*.dist-info`` folder with an
``entry_points.txt`` on ``sys.path`` is what importlib.metadata finds for an installed one."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks import plugins


def write_dist(root: Path, dist: str, entries: dict[str, dict[str, str]]) -> Path:
    """A ``dist``-0.1 metadata folder under ``root`` declaring ``entries`` (group -> name ->
    "module:attr"); returns ``root`` (the folder to put on the path)."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, names in entries.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in names.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@contextmanager
def installed(root: Path, dist: str, entries: dict[str, dict[str, str]]) -> Iterator[Path]:
    """The distribution is visible to this process (and, through PYTHONPATH, to the
    subprocesses it starts) inside the block."""
    write_dist(root, dist, entries)
    sys.path.insert(0, str(root))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), old) if p)
    plugins.refresh()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
        plugins.refresh()
