"""Kinds and policies from another distribution, through the entry points only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.client import Client
from app.config import Settings
from tasks.errors import InputError
from tasks.kinds import get_kind, kind_names
from tasks.plugins import KINDS_GROUP, POLICIES_GROUP, plugins
from tests.inline import InlineScheduler
from tests.plugin_example import ENTRY_POINTS, CountKind
from tests.plugins import installed

BUILT_IN_KINDS = {"sor", "ssor-pcg", "noop", "sleep", "inference", "table"}


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    with installed(tmp_path / "site", "banditq-test-plugins", ENTRY_POINTS) as root:
        yield root


def test_built_in_kinds_and_policies_register_through_entry_points() -> None:
    kinds = plugins(KINDS_GROUP)
    assert set(kinds) >= BUILT_IN_KINDS
    assert {p.dist for name, p in kinds.items() if name in BUILT_IN_KINDS} == {"banditq"}
    assert {"smooth-ts", "constrained-ts", "chebcb"} <= set(plugins(POLICIES_GROUP))
    assert get_kind("inference").default_policy == "constrained-ts"
    assert get_kind("sor").runner == "workers.kinds.solvers:run_sor"


def test_a_minimal_kind_and_a_policy_from_another_distribution_run_end_to_end(
    plugin_dist: Path, embedded_settings: Settings
) -> None:
    assert {"test-count", "test-split"} <= set(kind_names())
    client = Client(settings=embedded_settings)
    count = client.create_campaign("count", "test-count", {"w": [1.0, 0.5]}, policy="test-last")
    split = client.create_campaign(
        "split", "test-split", {"w": [1.0, 3.0]}, context_features=["size"], policy="random"
    )
    count.submit_many([(None, {}, {"n": n}) for n in (2, 4)])
    # the kind fills "size" from the spec; a caller's own value wins
    split.submit_many([(None, {}, {"size": 2.5}), (None, {"size": 9.0}, {"size": 1.0})])
    InlineScheduler(embedded_settings).run_until_idle(max_rounds=50)
    assert count.counts() == {"done": 2} and split.counts() == {"done": 2}
    rows = count.results()
    assert sorted(r["cost"] for r in rows) == [1.0, 2.0]  # always the last arm, w = 0.5
    assert {r["reason"] for r in rows} == {"plugin"}
    by_size = {r["context"]["size"]: r for r in split.results()}
    assert set(by_size) == {2.5, 9.0}
    assert by_size[9.0]["cost"] == abs(1.0 - [1.0, 3.0][by_size[9.0]["arm_index"]])
    with client.engine.connect() as c:
        labels = c.execute(
            text('SELECT name FROM arms WHERE campaign_id = :c ORDER BY "index"'), {"c": split.id}
        ).scalars()
        assert list(labels) == ["weight 1.0", "weight 3.0"]
    client.close()


@pytest.mark.parametrize(
    ("kind", "policy", "expect"),
    [
        ("no-such-kind", "default", ["kind", "unknown kind 'no-such-kind'", "banditq.kinds"]),
        ("test-missing", "default", ["kind", "test-missing", "failed to import", "no_such"]),
        ("test-extra", "default", ["kind", "pip install 'banditq-test-plugins[gpu]'"]),
        ("test-notakind", "default", ["kind", "test-notakind", "not a subclass (or instance)"]),
        ("test-count", "no-such-policy", ["policy", "unknown policy", "banditq.policies"]),
    ],
)
def test_a_bad_plugin_fails_at_campaign_creation_naming_it(
    plugin_dist: Path, embedded_settings: Settings, kind: str, policy: str, expect: list[str]
) -> None:
    client = Client(settings=embedded_settings)
    with pytest.raises(InputError) as err:
        client.create_campaign("c", kind, {"w": [1.0]}, policy=policy)
    assert err.value.field == expect[0]
    for part in expect[1:]:
        assert part in err.value.message
    assert client.campaigns() == []  # nothing written
    client.close()


def test_kind_validation_errors_name_the_field(plugin_dist: Path) -> None:
    with pytest.raises(InputError) as err:
        get_kind("test-count").validate_spec({"n": -1})
    assert err.value.field == "n"
    assert isinstance(get_kind("test-count"), CountKind)


def test_cli_lists_kinds_and_policies_with_their_distribution(plugin_dist: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["kinds"])
    lines = {ln.split()[0]: ln for ln in out.output.splitlines() if ln.strip()}
    assert "banditq-test-plugins 0.1" in lines["test-count"]
    assert "The minimal kind" in lines["test-count"]
    assert "banditq 0.1.0" in lines["sor"]
    assert "BROKEN" in lines["test-missing"] and out.exit_code == 1
    pol = runner.invoke(cli, ["policies"])
    assert pol.exit_code == 0, pol.output
    assert "banditq-test-plugins" in pol.output and "(default)" in pol.output


def test_per_decision_options_are_a_kind_hook() -> None:
    """The scheduler asks the kind for each decision's options: by default the campaign's
    own; the inference kind adds its ``monitor`` flag (no other kind sees it)."""
    from tasks.kinds import get_kind

    assert get_kind("noop").decision_options(None, True) is None
    assert get_kind("sor").decision_options({"a": 1}, True) == {"a": 1}
    assert get_kind("inference").decision_options({"model": "m"}, True) == {
        "model": "m",
        "monitor": True,
    }
    assert get_kind("inference").decision_options(None, False) == {"monitor": False}


def test_the_sleep_kinds_fault_injection_exists_only_in_test_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.errors import InputError
    from tasks.kinds.synthetic import TEST_HOOKS_ENV, SleepKind

    monkeypatch.delenv(TEST_HOOKS_ENV, raising=False)
    with pytest.raises(InputError) as err:
        SleepKind().validate_spec({"kill_worker": True})
    assert err.value.field == "kill_worker" and TEST_HOOKS_ENV in err.value.message
    # a message forged past the client does nothing either: the trial just sleeps
    assert SleepKind().run({"kill_worker": True, "seconds": 0.0}, {}).cost == 0.0
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")
    assert SleepKind().validate_spec({"kill_worker": True}) == {"kill_worker": True}
