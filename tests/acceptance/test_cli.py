"""The CLI in a subprocess, on the embedded default (no servers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]


def banditq(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    # each test its own embedded home (the default, a per-user folder, would be shared)
    full_env["BANDITQ_HOME"] = str(cwd / ".banditq")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_explains_commands_and_environment(tmp_path: Path) -> None:
    out = banditq("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in (
        "demo",
        "scheduler",
        "worker",
        "status",
        "results",
        "report",
        "dashboard",
        "db",
        "BANDITQ_DATABASE_URL",
        "BANDITQ_DASHBOARD_TOKEN",
        "BANDITQ_BROKER_URL",
    ):
        assert word in out.stdout
    # the commands come before the environment variables
    assert out.stdout.index("Commands") < out.stdout.index("Environment variables")


def test_demo_on_the_embedded_default_then_status_and_results(tmp_path: Path) -> None:
    out = banditq("demo", "--instances", "40", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trials succeeded: 40/40" in out.stdout
    assert "omega = 1" in out.stdout
    assert (tmp_path / ".banditq" / "banditq.db").exists()
    overview = json.loads(banditq("status", "--json", cwd=tmp_path).stdout)
    assert len(overview) == 1
    assert overview[0]["state"] == "active" and overview[0]["done"] == 40
    names = [overview[0]["campaign"]]
    table = banditq("status", cwd=tmp_path).stdout
    assert "demo-" in table and "40 / 40" in table and "active" in table
    st = json.loads(banditq("status", names[0], "--json", cwd=tmp_path).stdout)
    assert st["instances"] == {"done": 40} and st["policy_updates"] == 40
    rows = json.loads(banditq("results", names[0], "--format", "json", cwd=tmp_path).stdout)
    assert len(rows) == 40 and all(r["status"] == "succeeded" for r in rows)
    rep = banditq("report", names[0], "-o", "r.html", "--png", "plots", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "r.html").read_text()
    assert "doubly robust" in page and page.count("data:image/png;base64,") == 7
    assert len(list((tmp_path / "plots").glob("*.png"))) == 7
    summ = json.loads(banditq("report", names[0], "--json", cwd=tmp_path).stdout)
    assert summ["campaign"] == names[0] and summ["succeeded"] == 40
    if summ["speedup_over_baseline"] is None:  # the baseline barely played: said, not guessed
        assert summ["speedup_interval"] == [None, None]
        assert any("not enough data" in n and "holdout" in n for n in summ["notes"])
    else:
        lo, hi = summ["speedup_interval"]
        assert lo <= summ["speedup_over_baseline"] <= hi
    csv_out = banditq("results", names[0], "--format", "csv", cwd=tmp_path).stdout.splitlines()
    assert csv_out[0].startswith("campaign,") and len(csv_out) == 41
    header = csv_out[0].split(",")
    assert "arm.omega" in header and "arm" not in header and "{" not in csv_out[1]
    ope = banditq(
        "ope", names[0], "--policy", "fixed", "--config", '{"arm": 12}', "--json", cwd=tmp_path
    )
    assert ope.returncode == 0, ope.stderr
    est = json.loads(ope.stdout)
    assert est["rounds"] == 40 and est["logging_policy"] == "smooth-ts"
    assert {"ips", "snips", "dr", "ips_ci", "warnings", "effective_sample_size"} <= set(est)


def test_replay_command(tmp_path: Path) -> None:
    from tests.unit.test_policies import synthetic_table

    synthetic_table(200).save(tmp_path / "t.npz")
    out = banditq("replay", "t.npz", "--policy", "default", "--seed", "1", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["T"] == 200 and res["K"] == 8 and res["policy"] == "smooth-ts"
    assert res["ratio_to_oracle"] >= 1.0
    import numpy as np

    np.savez(tmp_path / "bad.npz", contexts=np.zeros((3, 1)), arms=np.arange(2.0))
    bad = banditq("replay", "bad.npz", cwd=tmp_path)
    assert bad.returncode == 2 and "costs: missing" in bad.stderr
    bad = banditq("replay", "t.npz", "--policy", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown" in bad.stderr


def test_unknown_campaign_is_a_clear_error(tmp_path: Path) -> None:
    out = banditq("status", "nope", cwd=tmp_path)
    assert out.returncode == 2 and "no campaign named 'nope'" in out.stderr


def test_compose_commands_exist_in_the_cli(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "rabbitmq", "migrate", "scheduler", "worker"} <= set(services)
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpu["capabilities"]
    for name in ("migrate", "mq-users", "scheduler", "worker"):
        svc = services[name]
        cmd = svc["command"]
        argv = cmd.split() if isinstance(cmd, str) else list(cmd)
        assert argv[0] == "banditq"
        out = banditq(*argv[1:], "--help", cwd=tmp_path)
        assert out.returncode == 0, f"{name}: {argv} is not a CLI command: {out.stderr}"
        env = svc.get("environment", {})
        assert "BANDITQ_DATABASE_URL" in env
    # each long-running role connects to the broker as its own user
    for name, user in (("scheduler", "banditq-scheduler"), ("worker", "banditq-worker")):
        assert f"amqp://{user}:" in services[name]["environment"]["BANDITQ_BROKER_URL"]


def _tables(tmp_path: Path) -> None:
    import numpy as np

    ctx, arms = np.zeros((3, 1)), np.arange(2.0)
    np.savez(tmp_path / "nan.npz", contexts=ctx, arms=arms, costs=np.array([[1, np.nan]] * 3))
    np.savez(tmp_path / "neg.npz", contexts=ctx, arms=arms, costs=-np.ones((3, 2)))
    np.savez(tmp_path / "rows.npz", contexts=ctx, arms=arms, costs=np.ones((4, 2)))
    np.savez(tmp_path / "nocosts.npz", contexts=ctx, arms=arms)
    (tmp_path / "junk.npz").write_text("not a zip file")


CLI_BAD = [
    ("missing table", ["replay", "nothere.npz"], {}, "no such file"),
    ("nan costs", ["replay", "nan.npz"], {}, "costs: must be finite"),
    ("negative costs", ["replay", "neg.npz"], {}, "costs: must be non-negative"),
    ("row mismatch", ["replay", "rows.npz"], {}, "contexts: has 3 rows"),
    ("no costs", ["replay", "nocosts.npz"], {}, "costs: missing"),
    ("not an npz", ["replay", "junk.npz"], {}, "not a readable .npz"),
    ("unknown results campaign", ["results", "nope"], {}, "no campaign named 'nope'"),
    ("bad results format", ["results", "x", "--format", "xml"], {}, "--format must be"),
    ("sql injection name", ["status", "x'; DROP TABLE campaigns; --"], {}, "no campaign named"),
    ("unknown ope campaign", ["ope", "nope", "--policy", "random"], {}, "no campaign named"),
    ("bad role name", ["db", "grant-reader", "bad;role"], {}, "role='bad;role'"),
    ("bad env number", ["status"], {"BANDITQ_SNAPSHOT_EVERY": "abc"}, "BANDITQ_SNAPSHOT_EVERY"),
    ("bad queue type", ["status"], {"BANDITQ_QUEUE_TYPE": "fancy"}, "BANDITQ_QUEUE_TYPE"),
]


@pytest.mark.parametrize(("label", "args", "env", "message"), CLI_BAD, ids=[c[0] for c in CLI_BAD])
def test_bad_cli_input_is_a_clear_error(
    tmp_path: Path, label: str, args: list[str], env: dict[str, str], message: str
) -> None:
    _tables(tmp_path)
    out = banditq(*args, cwd=tmp_path, env={"BANDITQ_HOME": str(tmp_path / "h"), **env})
    assert out.returncode == 2, (label, out.stderr[-500:])
    assert message in out.stderr, (label, out.stderr[-500:])
    assert "Traceback" not in out.stderr


def test_store_stats_and_gc_on_the_embedded_default(tmp_path: Path) -> None:
    import numpy as np

    from app.client import Client
    from app.config import Settings
    from tasks.linsys import LinearSystem
    from tasks.solvers.generators import build, validate
    from tasks.store.blobs import vector_ref

    settings = Settings(home=tmp_path / ".banditq", inline_bytes=1024)
    client = Client(settings=settings)
    camp = client.create_campaign("stored", "sor", {"omega": [1.5]})
    A, b = build(validate({"generator": "laplace2d", "m": 20}))
    camp.submit(LinearSystem(A, b), {})
    client.store.put(vector_ref(np.arange(50.0))[1])  # an orphan
    client.close()
    out = banditq("store", "stats", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["campaign"]: r for r in json.loads(out.stdout)}
    assert rows["stored"]["blobs"] == 2 and rows["(unreferenced)"]["blobs"] == 1
    out = banditq("store", "gc", "--older-than", "0s", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["removed"] == 1
    bad = banditq("store", "gc", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_plugin_listings_say_what_must_restart(tmp_path: Path) -> None:
    for command in ("kinds", "policies"):
        out = banditq(command, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "restart the scheduler" in out.stdout
    kinds = banditq("kinds", cwd=tmp_path).stdout
    assert "external" in kinds and "sor" in kinds
