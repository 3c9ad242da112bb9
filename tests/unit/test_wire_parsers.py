"""Every wire parser: what it refuses (MessageError naming the field: the scheduler
dead-letters it, a worker fails the trial) and what it cleans to fit the columns."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.states import ResultStatus
from tasks import wire_fields as wf
from tasks.messages import (
    PROTOCOL,
    Heartbeat,
    MessageError,
    ResultMessage,
    TrialMessage,
    WakeUp,
    WorkerAnnouncement,
    parse_inbound,
    parse_inbound_checked,
)
from tasks.store.blobs import HASH_RE, is_ref

T = str(uuid.uuid4())


def _refused(body: Any, field: str) -> None:
    with pytest.raises(MessageError) as err:
        parse_inbound_checked(body)
    assert err.value.field == field, err.value
    assert parse_inbound(body) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "payload"),
        ("text", "payload"),
        ({"type": "result"}, "v"),
        ({"v": PROTOCOL + 1, "type": "result"}, "v"),
        ({"v": PROTOCOL, "type": "nope"}, "type"),
        ({"v": PROTOCOL, "type": ["result"]}, "type"),
        ({"v": PROTOCOL, "type": "result", "trial": "x", "attempt": 1}, "trial"),
        ({"v": PROTOCOL, "type": "result", "trial": T + "\n", "attempt": 1}, "trial"),
        ({"v": PROTOCOL, "type": "result", "trial": T, "attempt": 0}, "attempt"),
        ({"v": PROTOCOL, "type": "result", "trial": T, "attempt": 2**31}, "attempt"),
        ({"v": PROTOCOL, "type": "result", "trial": T, "attempt": True}, "attempt"),
        ({"v": PROTOCOL, "type": "heartbeat", "trial": T, "attempt": "1"}, "attempt"),
        (
            {"v": PROTOCOL, "type": "heartbeat", "trial": T, "attempt": 1, "worker": "w\x00"},
            "worker",
        ),
        (
            {"v": PROTOCOL, "type": "heartbeat", "trial": T, "attempt": 1, "worker": "w" * 201},
            "worker",
        ),
        ({"v": PROTOCOL, "type": "wake", "campaign": "a\x00b"}, "campaign"),
        ({"v": PROTOCOL, "type": "wake", "campaign": "a\n"}, "campaign"),
        ({"v": PROTOCOL, "type": "wake", "campaign": "x" * 201}, "campaign"),
        ({"v": PROTOCOL, "type": "wake", "campaign": 7}, "campaign"),
    ],
)
def test_messages_that_identify_nothing_usable_are_refused_naming_the_field(
    body: Any, field: str
) -> None:
    _refused(body, field)


def _worker(**kw: Any) -> dict[str, Any]:
    body = {
        "v": PROTOCOL,
        "type": "worker",
        "worker": "celery@host",
        "profile": {"type": "cpu", "threads": 2},
        "device_class": "cpu",
        "slots": 2,
    }
    body.update(kw)
    return body


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"worker": ""}, "worker"),
        ({"slots": 0}, "slots"),
        ({"slots": 10**12}, "slots"),
        ({"profile": "cpu"}, "profile"),
        (
            {"profile": {"type": "cuda", "capability": 1e60}, "device_class": "cuda-9.0"},
            "profile.capability",
        ),
        (
            {"profile": {"type": "cuda", "capability": 9.0}, "device_class": "cuda-" + "9" * 61},
            "device_class",
        ),
        ({"device_class": "cuda-9.0"}, "device_class"),  # not the profile's class
    ],
)
def test_worker_announcements_are_bounded(kw: dict[str, Any], field: str) -> None:
    _refused(_worker(**kw), field)


def test_a_valid_announcement_parses() -> None:
    m = parse_inbound_checked(_worker())
    assert isinstance(m, WorkerAnnouncement) and m.slots == 2 and m.device_class == "cpu"
    cuda = _worker(profile={"type": "cuda", "capability": 9.0}, device_class="cuda-9.0")
    assert parse_inbound_checked(cuda).device_class == "cuda-9.0"  # type: ignore[union-attr]


def test_result_payload_fields_are_cleaned_to_fit_their_columns() -> None:
    body = {
        "v": PROTOCOL,
        "type": "result",
        "trial": T,
        "attempt": 2,
        "status": "succeeded",
        "cost": 3.0,
        "iterations": 2**40,
        "residual": float("nan"),
        "latency_ms": 10**400,
        "device": "d" * 80 + "\x00",
        "worker": "w\x00",
        "error": "e\x00" * 3000,
        "metrics": {"a\x00": "b\x00", "x": float("inf"), "big": 2**70, "ok": [1, 2.5, None]},
        "outputs": "not an object",
    }
    m = parse_inbound_checked(body)
    assert isinstance(m, ResultMessage) and m.ok and m.cost == 3.0 and m.attempt == 2
    assert m.iterations is None and m.residual is None and m.latency_ms is None
    assert m.device is not None and len(m.device) == 50
    assert m.worker == "w\ufffd"
    assert m.error is not None and len(m.error) == 4000 and "\x00" not in m.error
    assert m.metrics == {"a\ufffd": "b\ufffd", "x": None, "big": None, "ok": [1, 2.5, None]}
    assert m.outputs is None


def test_result_json_is_bounded_in_depth_and_size() -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    cleaned = wf.clean_json({"deep": deep}, "metrics")
    depth, v = 0, cleaned["deep"]
    while isinstance(v, list):
        v, depth = v[0], depth + 1
    assert depth <= wf.MAX_JSON_DEPTH and v is None
    huge = wf.clean_json({"s": "x" * (wf.MAX_JSON_BYTES + 1)}, "metrics")
    assert "dropped" in huge and "metrics" in huge["dropped"]


@pytest.mark.parametrize("cost", [float("nan"), -1.0, "3", True, None, float("inf")])
def test_a_success_without_a_usable_cost_becomes_a_failure(cost: Any) -> None:
    m = ResultMessage.parse({"trial": T, "attempt": 1, "status": "succeeded", "cost": cost})
    assert m.status is ResultStatus.failed and m.error is not None and "invalid cost" in m.error


def test_heartbeat_and_wake_round_trip() -> None:
    beat = Heartbeat(T, 3, "celery@h", "2026-01-01T00:00:00+00:00")
    assert parse_inbound_checked(beat.to_json()) == beat
    assert parse_inbound_checked(WakeUp("camp-1.a:b").to_json()) == WakeUp("camp-1.a:b")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("x", "payload"),
        ({"v": PROTOCOL}, "payload.trial"),
        (
            {"v": PROTOCOL, "trial": T, "kind": "sor", "campaign": "c", "attempt": 0},
            "payload.attempt",
        ),
        (
            {
                "v": PROTOCOL,
                "trial": T,
                "kind": "sor",
                "campaign": "c",
                "attempt": 1,
                "arm": [],
                "spec": {},
            },
            "payload",
        ),
        (
            {
                "v": PROTOCOL,
                "trial": T,
                "kind": "sor",
                "campaign": "c",
                "attempt": 1,
                "arm": {},
                "spec": {},
                "limits": 5,
            },
            "payload.limits",
        ),
    ],
)
def test_trial_messages_are_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(MessageError) as err:
        TrialMessage.parse(body)
    assert err.value.field == field


def test_hashes_match_in_full() -> None:
    h = "a" * 64
    assert HASH_RE.fullmatch(h) and HASH_RE.match(h + "\n") is None
    assert is_ref({"sha256": h, "kind": "vector"})
    assert not is_ref({"sha256": h + "\n", "kind": "vector"})
