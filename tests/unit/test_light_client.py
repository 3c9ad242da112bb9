"""Client processes never import torch or a model: trial kinds' heavy imports happen on
workers only (torch costs seconds and hundreds of MB, and need not be installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from app import Client, LinearSystem
assert "torch" not in sys.modules, "from app import Client imported torch"
from app.config import Settings
c = Client(settings=Settings(home=__import__("pathlib").Path(sys.argv[1])))
camp = c.create_campaign("light", "sor", {"omega": [1.0, 1.5]}, context_features=["shift"])
camp.submit(LinearSystem.laplace2d(5, 0.1, seed=1), {"shift": 0.1})
camp2 = c.create_campaign("light2", "noop", [{"cost": 1.0}])
camp2.submit(None, {})
pcg = c.create_campaign("light3", "ssor-pcg", {"omega": [1.2, 1.6]})
pcg.submit(LinearSystem.generate("laplace2d", 8, seed=1), {})
from tasks.kinds import get_kind, kind_names
for name in kind_names():  # every installed kind's client side loads without torch
    get_kind(name)
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""


def test_client_submits_without_importing_torch(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "home")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
