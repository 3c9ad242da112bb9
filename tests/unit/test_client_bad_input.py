"""Bad input through the client: an error naming the field, and the database unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from app.client import Client
from app.config import Settings
from models import Arm, Campaign, Instance
from tasks.errors import InputError
from tasks.linsys import LinearSystem

OMEGAS = {"omega": [1.2, 1.5]}
GOOD = LinearSystem.laplace2d(4, 0.1, 1)

CREATE = [
    ("sql injection name", {"name": "x'; DROP TABLE trials; --"}, "name"),
    ("empty name", {"name": ""}, "name"),
    ("unicode name", {"name": "caf\u00e9\u200b"}, "name"),
    ("unknown kind", {"kind": "fft"}, "kind"),
    ("unknown policy", {"policy": "magic"}, "policy"),
    ("omega zero", {"arms": {"omega": [0.0, 1.5]}}, "arms[0].omega"),
    ("omega two", {"arms": {"omega": [1.5, 2.0]}}, "arms[1].omega"),
    ("omega string", {"arms": {"omega": ["fast"]}}, "arms[0].omega"),
    ("unknown arm key", {"arms": [{"omega": 1.5, "beta": 2}]}, "arms[0]"),
    ("no arms", {"arms": {"omega": []}}, "arms.omega"),
    ("arms not a list", {"arms": {"omega": 1.5}}, "arms.omega"),
    ("duplicate arms", {"arms": [{"omega": 1.5}, {"omega": 1.5}]}, "arms"),
    ("nan arm", {"arms": {"omega": [float("nan")]}}, "arms[0]"),
    ("feature not identifier", {"context_features": ["shift size"]}, "context_features[0]"),
    ("duplicate features", {"context_features": ["a", "a"]}, "context_features"),
    ("in flight zero", {"max_in_flight": 0}, "max_in_flight"),
    (
        "bad policy config",
        {"policy": "epsilon-greedy", "policy_config": {"epsilon": 3}},
        "policy_config",
    ),
    (
        "bad guard",
        {"policy_config": {"guard": {"baseline_arm": 9, "tolerance": 0.1}}},
        "policy_config",
    ),
    ("bad trial seconds", {"max_trial_seconds": -1}, "max_trial_seconds"),
]

SUBMIT: list[tuple[str, Any, dict[str, Any], str]] = [
    ("missing feature", GOOD, {}, "context.shift"),
    ("extra feature", GOOD, {"shift": 0.1, "temp": 3.0}, "context.temp"),
    ("non-numeric feature", GOOD, {"shift": "high"}, "context.shift"),
    ("nan feature", GOOD, {"shift": float("nan")}, "context.shift"),
    ("bool feature", GOOD, {"shift": True}, "context.shift"),
    ("not a system", np.eye(3), {"shift": 0.1}, "system"),
    ("context not a dict", GOOD, [0.1], "context"),
]


def _make(client: Client, **over: Any):  # type: ignore[no-untyped-def]
    kw: dict[str, Any] = {
        "name": "ok",
        "kind": "sor",
        "arms": OMEGAS,
        "context_features": ["shift"],
    }
    kw.update(over)
    return client.create_campaign(**kw)


def _snapshot(client: Client) -> tuple[int, int, int]:
    with client.Session() as s:
        return (
            s.scalar(select(func.count()).select_from(Campaign)) or 0,
            s.scalar(select(func.count()).select_from(Arm)) or 0,
            s.scalar(select(func.count()).select_from(Instance)) or 0,
        )


@pytest.mark.parametrize(("label", "over", "field"), CREATE, ids=[c[0] for c in CREATE])
def test_bad_campaigns_are_refused(
    embedded_settings: Settings, label: str, over: dict[str, Any], field: str
) -> None:
    client = Client(settings=embedded_settings)
    other = _make(client, name="other")
    other.submit(GOOD, {"shift": 0.1})
    before = _snapshot(client)
    with pytest.raises(InputError) as info:
        _make(client, **over)
    assert info.value.field == field, (label, str(info.value))
    assert _snapshot(client) == before  # nothing written, the other campaign untouched
    assert other.counts() == {"pending": 1}


@pytest.mark.parametrize(
    ("label", "system", "context", "field"), SUBMIT, ids=[c[0] for c in SUBMIT]
)
def test_bad_submissions_are_refused(
    embedded_settings: Settings, label: str, system: Any, context: Any, field: str
) -> None:
    client = Client(settings=embedded_settings)
    camp = _make(client)
    camp.submit(GOOD, {"shift": 0.1})
    before = _snapshot(client)
    with pytest.raises(InputError) as info:
        camp.submit(system, context)
    assert info.value.field == field, (label, str(info.value))
    assert _snapshot(client) == before


def test_one_bad_item_refuses_the_whole_batch(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = _make(client)
    with pytest.raises(InputError) as info:
        camp.submit_many([(GOOD, {"shift": 0.1}), (GOOD, {"shift": "x"})])
    assert info.value.field == "items[1].context.shift"
    assert camp.counts() == {}


def test_oversized_payload_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = Client(settings=Settings(home=tmp_path, max_payload_bytes=2000))
    camp = _make(client)
    A = np.eye(200) * 4.0
    with pytest.raises(InputError, match="BANDITQ_MAX_PAYLOAD_BYTES") as info:
        camp.submit(LinearSystem(A, np.ones(200)), {"shift": 0.0})
    assert info.value.field == "system"
    assert camp.counts() == {}


def test_the_client_holds_only_its_last_uploads(embedded_settings: Settings) -> None:
    from app.client.session import UPLOAD_MEMO

    client = Client(settings=embedded_settings)
    vectors = [np.full(8, float(i)) for i in range(UPLOAD_MEMO * 3)]
    refs = [client._put("vector", v) for v in vectors]
    assert len(client._uploads) == UPLOAD_MEMO
    assert client._put("vector", vectors[-1]) is refs[-1]  # still remembered: no re-upload
    assert client._put("vector", vectors[0]) == refs[0]  # let go: uploaded again, same ref
    client.close()


def test_results_as_a_frame_have_a_column_per_feature_and_arm_parameter(
    embedded_settings: Settings,
) -> None:
    from tests.inline import InlineScheduler

    client = Client(settings=embedded_settings)
    camp = client.create_campaign(
        "tidy", "noop", [{"cost": 1.0, "tag": 1}, {"cost": 2.0, "tag": 2}], context_features=["x"]
    )
    camp.submit_many([(None, {"x": 0.5}), (None, {"x": 1.5})])
    InlineScheduler(embedded_settings).run_until_idle(max_rounds=50)
    frame = camp.results(as_frame=True)
    assert {"ctx.x", "arm.cost", "arm.tag"} <= set(frame.columns)
    assert "context" not in frame.columns and "arm" not in frame.columns
    assert sorted(frame["ctx.x"]) == [0.5, 1.5]
    assert frame["arm.cost"].dtype.kind == "f"
    client.close()
