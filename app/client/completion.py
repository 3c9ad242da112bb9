"""Waiting for instances and reading what they produced: ``wait``, ``solve``, ``embed``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text

from app.client import store
from app.client.solution import Solution
from app.client.store import SOLUTION_SQL
from app.client.submitting import Submission
from app.client.waiting import Poll
from models.base import json_value
from tasks.linsys import LinearSystem


class SolveTimeout(TimeoutError):
    """A solve (or ``solution``) waited ``waited`` seconds; its instance (``instance_id``)
    stays queued or running: ``camp.solution(instance_id)`` waits for it again."""

    def __init__(self, campaign: str, instance_id: int, waited: float) -> None:
        super().__init__(
            f"campaign {campaign!r}: instance {instance_id} not finished after waiting "
            f"{waited:g} s (it is still queued or running; camp.solution({instance_id}) waits "
            "again); is a scheduler (`banditq scheduler`) and a worker (`banditq worker`) "
            "running?"
        )
        self.instance_id = instance_id
        self.waited = waited


class Completion(Submission):
    """Blocking until instances finish, and their solutions and outputs."""

    def wait(
        self,
        timeout: float | None = None,
        progress: bool = False,
        instance_ids: Sequence[int] | None = None,
    ) -> dict[str, int]:
        """Block until every instance (or those given) is done or failed.

        On PostgreSQL it wakes on the scheduler's ``NOTIFY`` (raised in the transaction that
        records a result), re-checking at least every second; on the embedded default it
        polls (5 ms, backing off to 0.5 s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        # one instance (solve, embed) is expected soon: poll briskly
        cap = 0.02 if instance_ids is not None else 0.5
        poll = Poll(0.005, 1.5, cap, cap)
        self.client.completions.listening()
        try:
            while True:
                if instance_ids is None:
                    counts = self.counts()
                    total = sum(counts.values())
                    final = sum(counts.get(k, 0) for k in store.FINAL)
                else:
                    with self.client.Session() as s:
                        final = store.finished_count(s, instance_ids)
                    total, counts = len(instance_ids), {}
                if progress:
                    bar = bar or _Bar(self.name, total)
                    bar.update(final, total)
                if final >= total:
                    return counts
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"campaign {self.name!r}: {final}/{total} finished after {timeout} s; is "
                        "a scheduler (`banditq scheduler`) and a worker (`banditq worker`) running?"
                    )
                counted = time.monotonic()
                self.client.completions.pause(deadline, poll)
                if instance_ids is None:
                    # a campaign finishing many instances a second: count at most 20 times a
                    # second, not once per completion (the count competes with the work)
                    rest = 0.05 - (time.monotonic() - counted)
                    if rest > 0 and (deadline is None or time.monotonic() + rest < deadline):
                        time.sleep(rest)
        finally:
            if bar is not None:
                bar.close()
            self.client.completions.release()

    def solve(
        self,
        system: LinearSystem,
        context: Mapping[str, Any] | None = None,
        timeout: float | None = 600,
        **spec: Any,
    ) -> Solution:
        """Submit, wait for this one instance, return its solution (for a simulation loop)."""
        completions = self.client.completions
        completions.listening()  # before the submit: its completion notice cannot be missed
        generation = completions.generation
        iid = self.submit(system, context, return_solution=True, **spec)
        return self._solution(iid, timeout, generation)

    def solution(self, instance_id: int, timeout: float | None = 600) -> Solution:
        """Wait for one submitted instance and return its :class:`Solution` (``x`` needs
        ``return_solution=True`` at submit). Raises ``RuntimeError`` if its trial failed."""
        return self._solution(instance_id, timeout)

    def _solution(self, iid: int, timeout: float | None, generation: int | None = None) -> Solution:
        """Wait for one instance and read its result. On PostgreSQL it is read when its
        completion notice arrives (or after a second without one); when the listener was
        already listening at ``generation`` before the submit, nothing is read before."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # SQLite: a cheap query, and a solve is expected within milliseconds
        poll = Poll(0.002, 1.2, 0.005, 0.05)
        completions = self.client.completions
        look = not completions.listening() or completions.generation != generation
        while True:
            if not look:
                noticed = completions.pause(deadline, poll)
                look = noticed is None or str(iid) in noticed
                if deadline is not None and time.monotonic() > deadline:
                    look = True
                continue
            # On PostgreSQL the listening (autocommit) connection reads it: no pool checkout,
            # no transaction to end, one round trip right after the wake-up.
            seen_generation = completions.generation
            row = completions.first(SOLUTION_SQL.format(i="%(i)s"), {"i": iid})
            if row is None and not completions.listening():
                with self.client.engine.connect() as conn:
                    row = conn.execute(text(SOLUTION_SQL.format(i=":i")), {"i": iid}).first()
            if row is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                completions.release()
                raise SolveTimeout(self.name, iid, float(timeout or 0.0))
            # a reopened listener may have missed the notice: look again at once
            look = completions.generation != seen_generation
        completions.release()
        outputs, arm = json_value(row[6]) or {}, json_value(row[7])
        if row[1] != "succeeded":
            raise RuntimeError(f"trial {row[0]} {row[1]}: {row[8]}")
        return Solution(
            outputs.get("x"),
            row[2],
            row[3],
            row[4],
            row[5],
            arm,
            int(row[0]),
            str(row[1]),
            client=self.client,
        )

    def embed(
        self, texts: Sequence[str], max_length: int = 256, timeout: float | None = 600
    ) -> np.ndarray:
        """Embed one batch through the campaign (blocks, like :meth:`solve`): an array of
        shape (len(texts), dim), float32. The policy picks the acceleration; when a quality
        probe misses the campaign's floor, the reference (fp32) output is what comes back."""
        (iid,) = self.submit_texts([list(texts)], max_length=max_length, return_outputs=True)
        self.wait(timeout=timeout, instance_ids=[iid])
        out = self.outputs(iid)
        if out is None:
            raise RuntimeError(f"instance {iid} finished without outputs")
        return out

    def outputs(self, instance_id: int) -> np.ndarray | None:
        """The embeddings an instance submitted with ``return_outputs=True`` produced (None
        when it asked for none). Raises ``RuntimeError`` if its trial failed and
        ``LookupError`` if it has not finished."""
        from tasks.arrays import decode_array

        with self.client.Session() as s:
            row = store.latest_result(s, self.id, instance_id)
        if row is None:
            raise LookupError(f"instance {instance_id} of {self.name!r} has no result yet")
        if row.state != "succeeded":
            raise RuntimeError(f"trial {row.id} {row.state}: {row[3] or row[4]}")
        outputs = json_value(row.outputs) or {}
        emb = outputs.get("embeddings")
        return None if emb is None else decode_array(emb)


class _Bar:
    """A rich progress bar on stderr."""

    def __init__(self, name: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.p = Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        self.p.start()
        self.task = self.p.add_task(name, total=total)

    def update(self, done: int, total: int) -> None:
        self.p.update(self.task, completed=done, total=total)

    def close(self) -> None:
        self.p.stop()
