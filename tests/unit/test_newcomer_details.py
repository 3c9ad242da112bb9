"""Small things a newcomer meets (issue 31, item 6)."""

from __future__ import annotations

import pytest

from app.client import Client
from app.client.completion import SolveTimeout
from app.config import Settings


def test_a_timed_out_solve_says_how_long_it_waited_and_which_instance(
    embedded_settings: Settings,
) -> None:
    with Client(settings=embedded_settings) as client:  # no scheduler runs
        camp = client.create_campaign("c", "noop", [{"cost": 1.0}])
        with pytest.raises(SolveTimeout) as err:
            camp.solve(None, {}, timeout=0.3)
        assert err.value.waited == 0.3
        assert "after waiting 0.3 s" in str(err.value)
        assert f"camp.solution({err.value.instance_id})" in str(err.value)
        assert isinstance(err.value, TimeoutError)
        assert camp.counts()["pending"] == 1  # still queued, not lost


def test_a_worker_process_registers_its_tasks_without_duplicate_warnings(
    embedded_settings: Settings,
) -> None:
    """A worker builds two Celery apps (its tasks', its announcer's); Celery's default
    shared tasks made every start warn DuplicateTaskNameWarning twice."""
    import warnings

    from tasks.messages import RUN_LONG_TRIAL_TASK, RUN_TRIAL_TASK
    from workers.celery_app import make_celery

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        apps = [make_celery(embedded_settings), make_celery(embedded_settings)]
        for app in apps:
            assert RUN_TRIAL_TASK in app.tasks and RUN_LONG_TRIAL_TASK in app.tasks
    assert not [w for w in seen if "DuplicateTaskName" in w.category.__name__]


def test_a_worker_warms_its_kinds_up_before_its_first_trial() -> None:
    """The first trial's latency must not include loading and compiling the kernels: the
    worker runs each kind's warm-up before it takes trials (a fresh interpreter here)."""
    import subprocess
    import sys

    script = (
        "from workers.solvers import kernels\n"
        "from workers.daemon import warm_up\n"
        "before = {f.__name__: len(f.signatures) for f in (kernels.spmv_dot, kernels.ssor_apply)}\n"
        "warm_up(('sor', 'ssor-pcg', 'noop', 'external'))\n"
        "after = {f.__name__: len(f.signatures) for f in (kernels.spmv_dot, kernels.ssor_apply)}\n"
        "print(before, after)\n"
        "assert all(n == 0 for n in before.values()) and all(n > 0 for n in after.values())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_progress_bar_counts_what_the_call_waits_for(
    embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait(instance_ids=...)`` counts those instances, not the whole campaign."""
    from app.client import completion
    from tests.inline import InlineScheduler

    seen: list[tuple[int, int]] = []

    class Bar:
        def __init__(self, name: str, total: int) -> None:
            seen.append((0, total))

        def update(self, done: int, total: int) -> None:
            seen.append((done, total))

        def close(self) -> None:
            pass

    monkeypatch.setattr(completion, "_Bar", Bar)
    with Client(settings=embedded_settings) as client:
        camp = client.create_campaign("bar", "noop", [{"cost": 1.0}])
        ids = camp.submit_many([(None, {}) for _ in range(5)])
        InlineScheduler(embedded_settings).run_until_idle()
        camp.submit_many([(None, {}) for _ in range(3)])  # not waited for below
        camp.wait(timeout=10, progress=True, instance_ids=ids[:2])
        assert seen and all(total == 2 for _done, total in seen) and seen[-1] == (2, 2)
        seen.clear()
        with pytest.raises(TimeoutError):
            camp.wait(timeout=0.2, progress=True)  # the whole campaign: 8, 5 done
        assert seen[-1] == (5, 8)
