"""The hostile-input suite (issue 27) against the real PostgreSQL + RabbitMQ: a healthy
campaign runs while more than 60 hostile inputs arrive — messages published straight to the
broker (malformed JSON, wrong types, NUL, huge strings, out-of-range numbers, unknown types,
forged results for unknown trials and stale attempts, forged announcements, task messages
the workers must refuse), client calls with bad settings, specs, references and contexts,
campaigns broken in the database, and crafted systems a worker must fail, not crash on.

Pass: the healthy campaign finishes exactly once, every hostile input is refused (an error
naming the field), dead-lettered or failed with its reason, no process exits, and
``banditq status`` names every broken campaign."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kombu
import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import func, select, text, update

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from app.scheduler.taskpublisher import TaskPublisher
from models import Campaign, DeadLetter, Instance
from tasks.errors import InputError
from tasks.linsys import LinearSystem
from tasks.messages import PROTOCOL, RUN_TRIAL_TASK, events_queue, results_queue
from tasks.store.blobs import CSR_MAGIC, csr_ref, digest, vector_ref
from tests.integration.test_faults import _check_exactly_once

N = 40
OMEGAS = {"omega": [1.0, 1.4, 1.8]}


def _publish_raw(settings: Settings, queue: kombu.Queue, bodies: list[Any]) -> None:
    """Each body as its own message: JSON objects as JSON, bytes as they are (not JSON)."""
    with kombu.Connection(settings.broker_url) as conn:
        producer = conn.Producer()
        for body in bodies:
            if isinstance(body, bytes):
                payload, ctype = body, "application/json"
            else:
                payload, ctype = json.dumps(body), "application/json"
            producer.publish(
                payload,
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                content_type=ctype,
                content_encoding="utf-8",
                declare=[queue],
            )


def _hostile_results(live_trial: str) -> list[Any]:
    """Worker -> scheduler forgeries: each is dead-lettered (malformed) by the scheduler."""
    v, t = PROTOCOL, str(uuid.uuid4())
    out: list[Any] = [
        b"{not json",
        b"\x00\x01\x02",
        [1, 2, 3],
        "a string",
        42,
        None,
        {"type": "result"},  # no protocol version
        {"v": 999, "type": "result", "trial": t, "attempt": 1},
        {"v": v},  # no type
        {"v": v, "type": "shutdown"},
        {"v": v, "type": {"nested": True}},
        {"v": v, "type": "result", "trial": None, "attempt": 1},
        {"v": v, "type": "result", "trial": "", "attempt": 1},
        {"v": v, "type": "result", "trial": "x" * 100_000, "attempt": 1},
        {"v": v, "type": "result", "trial": t + "\x00", "attempt": 1},
        {"v": v, "type": "result", "trial": live_trial + "\n", "attempt": 1},
        {"v": v, "type": "result", "trial": t, "attempt": -1},
        {"v": v, "type": "result", "trial": t, "attempt": 2**63},
        {"v": v, "type": "result", "trial": t, "attempt": "1"},
        {"v": v, "type": "result", "trial": t, "attempt": 1.5},
        {"v": v, "type": "result", "trial": t, "attempt": True},
        {"v": v, "type": "heartbeat", "trial": t, "attempt": 1, "worker": "w\x00"},
        {"v": v, "type": "heartbeat", "trial": t, "attempt": 1, "worker": "w" * 10_000},
        {"v": v, "type": "heartbeat", "trial": ["x"], "attempt": 1},
        {"v": v, "type": "heartbeat", "trial": t, "attempt": 0},
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "slots": 1,
            "device_class": "cuda-" + "9" * 61,
            "profile": {"type": "cuda", "capability": 1e60},
        },
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "slots": 10**9,
            "device_class": "cpu",
            "profile": {"type": "cpu"},
        },
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "slots": 1,
            "device_class": "cpu",
            "profile": "cpu",
        },
        {
            "v": v,
            "type": "worker",
            "worker": "evil\x00",
            "slots": 1,
            "device_class": "cpu",
            "profile": {"type": "cpu"},
        },
        {
            "v": v,
            "type": "worker",
            "worker": "evil",
            "slots": 1,
            "device_class": "cuda-9.0",
            "profile": {"type": "cpu"},
        },  # a class that is not its profile's
    ]
    return out


def _hostile_events() -> list[Any]:
    v = PROTOCOL
    return [
        {"v": v, "type": "wake", "campaign": "nul\x00name"},
        {"v": v, "type": "wake", "campaign": "x" * 100_000},
        {"v": v, "type": "wake", "campaign": 12},
        {"v": v, "type": "wake", "campaign": "trailing\n"},
        {"v": v, "type": "wake"},
        {"v": v, "type": "wake", "campaign": "../../etc/passwd"},
        b"wake me",
    ]


def _forged_but_wellformed(live_trial: str) -> list[dict[str, Any]]:
    """Well-formed forgeries: refused by the recorder (unknown trial, stale attempt), never
    applied, never dead-lettered."""
    v = PROTOCOL
    return [
        {
            "v": v,
            "type": "result",
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "status": "succeeded",
            "cost": 0.0,
        },
        {
            "v": v,
            "type": "result",
            "trial": live_trial,
            "attempt": 99,
            "status": "succeeded",
            "cost": 0.0,
        },
        {"v": v, "type": "heartbeat", "trial": str(uuid.uuid4()), "attempt": 1},
    ]


def _bad_client_calls(client: Client, camp: Any) -> list[tuple[str, Any]]:
    """(field the error must name, call)."""
    arms = OMEGAS
    big = LinearSystem.laplace2d(4)
    return [
        (
            "settings.monitor_fraction",
            lambda: client.create_campaign(
                "h1", "sor", arms, settings={"monitor_fraction": "half"}
            ),
        ),
        (
            "settings.limits.max_seconds",
            lambda: client.create_campaign(
                "h2", "sor", arms, settings={"limits": {"max_seconds": 1e300}}
            ),
        ),
        (
            "settings.nonsense",
            lambda: client.create_campaign("h3", "sor", arms, settings={"nonsense": 1}),
        ),
        (
            "policy_config",
            lambda: client.create_campaign("h4", "sor", arms, policy_config={"knots": 10**9}),
        ),
        (
            "arms",
            lambda: client.create_campaign(
                "h5", "sor", {"omega": list(np.linspace(1, 1.9, 300)), "x": list(range(300))}
            ),
        ),
        ("max_in_flight", lambda: client.create_campaign("h6", "sor", arms, max_in_flight=100_000)),
        (
            "max_trial_seconds",
            lambda: client.create_campaign("h7", "sor", arms, max_trial_seconds=9e6),
        ),
        ("name", lambda: client.create_campaign("bad\x00name", "sor", arms)),
        ("name", lambda: client.create_campaign("x" * 5000, "sor", arms)),
        (
            "context_features",
            lambda: client.create_campaign("h8", "sor", arms, context_features="shift"),
        ),
        ("seed", lambda: client.create_campaign("h9", "sor", arms, seed=2**40)),
        ("kind", lambda: client.create_campaign("h10", "no-such-kind", arms)),
        ("context", lambda: camp.submit(big, {"shift": float("nan")})),
        ("context", lambda: camp.submit(big, {"nope": 1.0, "shift": 0.0})),
        ("tol", lambda: camp.submit(big, {"shift": 0.0}, tol=-1.0)),
        ("max_iters", lambda: camp.submit(big, {"shift": 0.0}, max_iters=10**12)),
        ("x0", lambda: camp.submit(big, {"shift": 0.0}, x0=[1.0, 2.0])),
    ]


def _crafted_specs(client: Client) -> list[tuple[str, dict[str, Any]]]:
    """(what the failure must name, spec) of systems whose stored blobs lie."""
    store = client.store
    n = 36
    A = sp.csr_matrix(LinearSystem.laplace2d(6).build()[0])

    def put(data: bytes, kind: str, shape: list[int]) -> dict[str, Any]:
        store.put(data)
        return {"sha256": digest(data), "kind": kind, "shape": shape, "nbytes": len(data)}

    def blob(n_: int, indptr: Any, indices: Any, data: Any) -> bytes:
        return b"".join(
            (
                CSR_MAGIC,
                struct.pack("<qq", n_, len(indices)),
                np.asarray(indptr, "<i8").tobytes(),
                np.asarray(indices, "<i4").tobytes(),
                np.asarray(data, "<f8").tobytes(),
            )
        )

    good_A = put(csr_ref(A)[1], "csr", [n, n]) | {"diag_min": 4.0, "diag_max": 4.0}
    good_b = put(vector_ref(np.ones(n))[1], "vector", [n])
    long_x0 = put(vector_ref(np.ones(10 * n))[1], "vector", [n])
    short_b = put(vector_ref(np.ones(3))[1], "vector", [n])
    bad_idx = A.indices.copy()
    bad_idx[3] = 10**7
    bad_ptr = A.indptr.copy()
    bad_ptr[5] = -4

    def stored(Aref: dict[str, Any], bref: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "system": {"stored": {"A": Aref, "b": bref, "alpha": 0.0, "beta": 1.0}},
            "tol": 1e-8,
            "max_iters": 500,
            **extra,
        }

    return [
        ("shape", stored(good_A, good_b, x0=long_x0)),
        ("shape", stored(good_A, short_b)),
        ("column indices", stored(put(blob(n, A.indptr, bad_idx, A.data), "csr", [n, n]), good_b)),
        ("indptr", stored(put(blob(n, bad_ptr, A.indices, A.data), "csr", [n, n]), good_b)),
        ("header", stored(put(blob(10**8, A.indptr, A.indices, A.data), "csr", [n, n]), good_b)),
        ("not in the store", stored({**good_A, "sha256": "0" * 64}, good_b)),
    ]


def _task_forgeries() -> list[dict[str, Any]]:
    """Task messages a hostile client puts on the trials queue: the worker fails each one
    (its result names an unknown trial: refused by the scheduler), and goes on."""
    t = PROTOCOL
    return [
        {
            "v": t,
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "campaign": "x",
            "kind": "nope",
            "spec": {},
            "arm": {},
        },
        {
            "v": t,
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "campaign": "x",
            "kind": "sor",
            "spec": {"system": {"n": 10**9}},
            "arm": {"omega": 1.5},
        },
        {
            "v": t,
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "campaign": "x",
            "kind": "sor",
            "spec": "not an object",
            "arm": {"omega": 1.5},
        },
        {
            "v": t,
            "trial": str(uuid.uuid4()),
            "attempt": 1,
            "campaign": "x",
            "kind": "sleep",
            "spec": {"kill_worker": True},
            "arm": {},
        },
        {"v": 7, "trial": str(uuid.uuid4())},
    ]


def test_hostile_inputs_while_a_healthy_campaign_runs(
    pg_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(pg_settings, sweep_seconds=0.5)
    client = Client(settings=settings)
    healthy = client.create_campaign(
        "healthy", "sor", OMEGAS, context_features=["shift"], max_in_flight=4
    )
    hostile = 0
    # -- client calls: refused before anything is written, the field named
    for field, call in _bad_client_calls(client, healthy):
        with pytest.raises(InputError) as err:
            call()
        assert field in err.value.field, (field, err.value)
        hostile += 1
    with client.Session() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 1
    # -- campaigns broken in the database (written by hand or by an older client)
    broken = {
        "broken-settings": {"settings": {"monitor_fraction": "half"}},
        "broken-kind": {"kind": "not-installed-anywhere"},
        "broken-policy": {"policy_config": {"knots": 10**9}},
    }
    for name, values in broken.items():
        camp = client.create_campaign(name, "noop", [{"cost": 1.0}])
        camp.submit_many([(None, {})])
        with client.Session() as s, s.begin():
            s.execute(update(Campaign).where(Campaign.name == name).values(values))
        hostile += 1
    # -- crafted systems: a hostile client writing instances the client would refuse
    crafted = client.create_campaign("crafted", "sor", {"omega": [1.5]}, max_in_flight=2)
    specs = _crafted_specs(client)
    with client.Session() as s, s.begin():
        for i, (_why, spec) in enumerate(specs):
            s.add(Instance(campaign_id=crafted.id, seq=i, context={}, spec=spec))
        s.execute(update(Campaign).where(Campaign.id == crafted.id).values(n_instances=len(specs)))
    hostile += len(specs)

    rng = np.random.default_rng(0)
    systems = [
        (LinearSystem.laplace2d(6, float(c), seed=i), {"shift": float(c)})
        for i, c in enumerate(rng.uniform(0.0, 0.5, N))
    ]
    q_results = results_queue(settings.queue)
    q_events = events_queue(settings.queue)
    with LocalCluster(settings, workers=1) as cluster:
        healthy.submit_many(systems[: N // 2], tol=1e-8, max_iters=5000)
        deadline = time.monotonic() + 60
        live = None
        while live is None and time.monotonic() < deadline:
            with client.engine.connect() as c:
                live = c.execute(text("SELECT uuid FROM trials LIMIT 1")).scalar()
            time.sleep(0.1)
        assert live is not None
        malformed = _hostile_results(live)
        _publish_raw(settings, q_results, malformed)
        events = _hostile_events()
        _publish_raw(settings, q_events, events)
        forged = _forged_but_wellformed(live)
        _publish_raw(settings, q_results, forged)
        tasks = TaskPublisher(lambda: kombu.Connection(settings.broker_url), settings.queue)
        for payload in _task_forgeries():
            tasks.publish(RUN_TRIAL_TASK, str(uuid.uuid4()), payload, argsrepr="forged")
        tasks.close()
        hostile += len(malformed) + len(events) + len(forged) + len(_task_forgeries())
        healthy.submit_many(systems[N // 2 :], tol=1e-8, max_iters=5000)
        healthy.wait(timeout=240)
        crafted.wait(timeout=240)
        time.sleep(2.0)  # a sweep marks the broken campaigns
        cluster.check()  # no process exited
        scheduler_log = (settings.home / "logs" / "scheduler.log").read_text(errors="replace")
    assert hostile >= 60, hostile
    # the healthy campaign: exactly once, every result applied once
    _check_exactly_once(client, "healthy", N)
    # malformed messages: acknowledged, kept with the reason, counted
    with client.Session() as s:
        letters = s.scalars(select(DeadLetter)).all()
    by_source = {src: sum(1 for d in letters if d.source == src) for src in ("results", "events")}
    assert by_source["events"] == len(events)
    # results: every malformed forgery, plus the worker's own failure report for the forged
    # task that carried no attempt (it cannot name one: refused in turn)
    assert by_source["results"] == len(malformed) + 1, [d.reason for d in letters]
    assert all(d.reason for d in letters)
    assert "refused" in scheduler_log or "refusing" in scheduler_log
    # crafted systems: each a failed trial naming what was wrong
    got = crafted.results()
    assert len(got) == len(specs) and all(r["status"] == "failed" for r in got)
    errors = sorted(r["error"] or "" for r in got)
    for why, _spec in specs:
        assert any(why in e for e in errors), (why, errors)
    # broken campaigns: named, with the reason, by `banditq status`
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env.update(settings.to_env())
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    states = {r["campaign"]: r for r in json.loads(out.stdout)}
    for name in broken:
        assert states[name]["state"] == "broken" and states[name]["broken_reason"], states[name]
    assert states["healthy"]["state"] == "active" and states["crafted"]["state"] == "active"
