"""The trial-kind contract, run over every installed kind (the policies have theirs in
test_policies.py): validation is idempotent and names fields, arms validate and label, the
kind's options take their own settings, bad specs are refused with an InputError, and one run
on the kind's tiny example gives a usable cost. A plugin kind without an example goes through
the refusal checks only."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.campaign_settings import campaign_settings
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.kinds.base import KindExample, Outcome, TrialKind
from tasks.plugins import KINDS_GROUP, names

BUILT_IN = {"sor", "ssor-pcg", "noop", "sleep", "table", "inference"}
KINDS = sorted(names(KINDS_GROUP))


def test_every_built_in_kind_is_installed_and_has_an_example() -> None:
    assert set(KINDS) >= BUILT_IN
    for name in BUILT_IN:
        assert isinstance(get_kind(name).example(), KindExample), name


@pytest.mark.parametrize("name", KINDS)
def test_specs_are_validated_with_errors_that_name_a_field(name: str) -> None:
    """Any kind: validation either normalizes a spec into a dict or refuses it with an
    InputError naming a field; nothing else escapes (the worker turns exactly that into a
    failed trial naming the field)."""
    kind = get_kind(name)
    assert isinstance(kind, TrialKind) and kind.name == name
    for bad in ({}, {"unexpected": object()}, {"system": "x", "texts": 3, "costs": [1]}):
        try:
            out = kind.validate_spec(bad)
        except InputError as exc:
            assert exc.field, (name, bad)
        else:
            assert isinstance(out, dict), (name, bad)


@pytest.mark.parametrize("name", sorted(BUILT_IN - {"noop", "sleep"}))
def test_built_in_kinds_refuse_an_empty_spec(name: str) -> None:
    with pytest.raises(InputError):
        get_kind(name).validate_spec({})


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_a_kind_validates_labels_and_runs_its_example(name: str) -> None:
    kind = get_kind(name)
    ex = kind.example()
    assert ex is not None
    kind.validate_arms(ex.arms)
    labels = [kind.arm_label(a) for a in ex.arms]
    assert all(isinstance(x, str) and 0 < len(x) <= 200 for x in labels)
    assert len(set(labels)) == len(labels), labels
    spec = kind.validate_spec(dict(ex.spec))
    assert kind.validate_spec(dict(spec)) == spec  # idempotent: the worker validates again
    settings = dict(ex.settings)
    options = kind.campaign_options(settings)
    assert isinstance(options, dict)
    arms, stored, _config, _features = kind.prepare_campaign(
        ex.arms, {**settings, **({"kind_options": options} if options else {})}, "default", {}, []
    )
    campaign_settings(name, stored)  # what creation stores passes the typed settings
    per_trial = kind.decision_options(stored.get("kind_options"), monitored=False)
    assert per_trial is None or isinstance(per_trial, dict)
    for arm in arms[:2]:
        assert kind.arm_unsupported(arm, "cpu") is None
        out = kind.run(spec, arm, per_trial)
        assert isinstance(out, Outcome)
        assert isinstance(out.cost, int | float) and math.isfinite(out.cost) and out.cost >= 0
        assert isinstance(out.metrics, dict)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_unknown_settings_are_refused_by_each_kind(name: str) -> None:
    from app.client.creating import create_campaign

    class NoDB:
        """create_campaign refuses before it opens a session."""

        def Session(self) -> Any:  # noqa: N802 - the client's attribute
            raise AssertionError("a refused campaign must write nothing")

    ex = get_kind(name).example()
    assert ex is not None
    with pytest.raises(InputError) as err:
        create_campaign(
            NoDB(),  # type: ignore[arg-type]
            "c",
            name,
            ex.arms,
            settings={**ex.settings, "surely_not_a_setting": 1},
        )
    assert err.value.field == "settings.surely_not_a_setting"


def test_arm_labels_show_numbers_as_written() -> None:
    kind = get_kind("sor")
    omegas = [1.0 + 0.05 * i for i in range(20)]
    assert omegas[-1] != 1.95  # 1.9500000000000002: what the arithmetic gives
    labels = [kind.arm_label({"omega": w}) for w in omegas]
    assert labels[-1] == "omega=1.95" and labels[0] == "omega=1.0"
    assert len(set(labels)) == 20
