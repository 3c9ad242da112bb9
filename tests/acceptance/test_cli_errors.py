"""Failures a user can fix (a folder that does not exist yet, a dead database, a dead broker,
a wrong password) give one line naming the masked URL, the cause and what to do, with exit
status 2; ``--debug`` gives the traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import banditq

DEAD_PG = "postgresql+psycopg://postgres:s3cret@127.0.0.1:5999/banditq"
NO_ROLE = "postgresql+psycopg://nobody:s3cret@127.0.0.1:5432/test"
DEAD_MQ = "amqp://guest:s3cret@127.0.0.1:5999//"
BAD_PASSWORD_MQ = "amqp://guest:s3cret@127.0.0.1:5672//"

CASES = [
    # (label, command, environment, what the one line must say)
    ("dead-db/status", ["status"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999 failed"),
    ("dead-db/upgrade", ["db", "upgrade"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999"),
    ("dead-db/results", ["results", "c"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999"),
    ("dead-db/scheduler", ["scheduler"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999"),
    ("dead-db/report", ["report", "c"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999"),
    ("dead-db/dashboard", ["dashboard"], {"BANDITQ_DATABASE_URL": DEAD_PG}, "port 5999"),
    ("no-role/status", ["status"], {"BANDITQ_DATABASE_URL": NO_ROLE}, 'role "nobody"'),
    ("dead-mq/scheduler", ["scheduler"], {"BANDITQ_BROKER_URL": DEAD_MQ}, "refused"),
    ("dead-mq/worker", ["worker"], {"BANDITQ_BROKER_URL": DEAD_MQ}, "refused"),
    ("bad-password/worker", ["worker"], {"BANDITQ_BROKER_URL": BAD_PASSWORD_MQ}, "ACCESS_REFUSED"),
    ("bad-password/scheduler", ["scheduler"], {"BANDITQ_BROKER_URL": BAD_PASSWORD_MQ}, "403"),
    ("bad-config/status", ["status"], {"BANDITQ_LEASE_SECONDS": "soon"}, "BANDITQ_LEASE_SECONDS"),
    ("bad-pool/worker", ["worker"], {"BANDITQ_WORKER_POOL": "solo"}, "must be one of prefork"),
    (
        "postgres-scheme/status",
        ["status"],
        {"BANDITQ_DATABASE_URL": "postgres://u@h/db"},
        "postgresql+psycopg://",
    ),
    (
        "host-only/status",
        ["status"],
        {"BANDITQ_DATABASE_URL": "localhost:5432"},
        "postgresql+psycopg://",
    ),
    (
        "ampq/scheduler",
        ["scheduler"],
        {"BANDITQ_BROKER_URL": "ampq://guest@localhost//"},
        "amqp://user:password@host:5672//",
    ),
    (
        "threads-concurrency/worker",
        ["worker", "-c", "2"],
        {"BANDITQ_WORKER_POOL": "threads"},
        "start more workers",
    ),
]


@pytest.mark.acceptance
@pytest.mark.parametrize(("label", "args", "env", "says"), CASES, ids=[c[0] for c in CASES])
def test_failures_are_one_line_with_the_masked_url_and_exit_2(
    tmp_path: Path, label: str, args: list[str], env: dict[str, str], says: str
) -> None:
    out = banditq(*args, cwd=tmp_path, timeout=120, env=env)
    assert out.returncode == 2, (label, out.stdout, out.stderr)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert says in errors[0], errors[0]
    assert "Traceback" not in out.stderr
    assert "s3cret" not in out.stderr + out.stdout  # credentials are masked
    if label.startswith(("dead-db", "no-role")):
        assert "database postgresql+psycopg://" in errors[0] and ":***@" in errors[0]
        assert "BANDITQ_DATABASE_URL" in errors[0]
    if "mq" in label or "password" in label:
        assert "broker amqp://guest:***@" in errors[0] and "BANDITQ_BROKER_URL" in errors[0]


@pytest.mark.acceptance
@pytest.mark.parametrize(
    "args", [["db", "upgrade"], ["status"], ["scheduler", "--idle-exit", "0.5"]]
)
def test_a_home_folder_that_does_not_exist_yet_is_created(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "new" / "folder"
    out = banditq(*args, cwd=tmp_path, timeout=120, env={"BANDITQ_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert (home / "banditq.db").exists()


@pytest.mark.acceptance
@pytest.mark.parametrize("how", ["--debug", "BANDITQ_DEBUG"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    env = {"BANDITQ_DATABASE_URL": DEAD_PG}
    args = ["status"]
    if how == "--debug":
        args = ["--debug", "status"]
    else:
        env["BANDITQ_DEBUG"] = "1"
    out = banditq(*args, cwd=tmp_path, timeout=120, env=env)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "OperationalError" in out.stderr


@pytest.mark.acceptance
def test_report_and_dashboard_say_what_to_do(tmp_path: Path) -> None:
    """An unknown campaign, an unwritable report path and a port in use are one line each;
    the embedded database is created on first use (as the client does)."""
    import socket

    out = banditq("report", "nope", cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "no campaign named 'nope'" in out.stderr, out.stderr
    assert "banditq status" in out.stderr and "Traceback" not in out.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = banditq("dashboard", "--port", str(port), cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr
    assert "Traceback" not in out.stderr
    out = banditq("dashboard", "--refresh", "0", cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "--refresh must be > 0" in out.stderr
    help_text = banditq("dashboard", "--help", cwd=tmp_path, timeout=120).stdout
    assert "grant-reader" in help_text and "BANDITQ_DASHBOARD_TOKEN" in help_text
