"""Drive the real Scheduler without a broker: capture what it publishes, execute it with the
real task body, and hand the result messages back. For fast unit tests of scheduling logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.scheduler import Scheduler
from tasks.messages import TrialMessage
from workers.run_trial import execute


class FakeMessage:
    def __init__(self) -> None:
        self.acked = False

    def ack(self, multiple: bool = False) -> None:
        self.acked = True

    def requeue(self) -> None:
        return None


class FakePublisher:
    """Keeps what the scheduler sends (as JSON bodies) instead of sending it."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        #: everything ever sent (``published`` is consumed by run_until_idle)
        self.sent: list[dict[str, Any]] = []
        #: the next N calls of ``send`` fail as a broker outage would (nothing sent)
        self.fail_sends = 0
        #: messages the broker refuses, every time (a send stops at the first of them)
        self.refuse: Callable[[TrialMessage], bool] = lambda _m: False
        self.last_error = ""

    def send(self, messages: list[TrialMessage]) -> list[str]:
        if self.fail_sends and messages:
            self.fail_sends -= 1
            return []
        out: list[str] = []
        for m in messages:
            if self.refuse(m):
                self.last_error = "PRECONDITION_FAILED - message refused"
                break
            body = m.to_json()
            self.published.append(body)
            self.sent.append(body)
            out.append(m.trial)
        return out

    def close(self) -> None:
        return None


class InlineScheduler(Scheduler):
    """The real scheduler with a :class:`FakePublisher` injected; ``feed`` hands it a
    message as the broker would."""

    def __init__(self, settings: Settings, **kw: Any) -> None:
        super().__init__(settings, publisher=FakePublisher(), **kw)
        from workers.context import configure

        configure(settings)  # trials executed in this process use the test's store and cache

    @property
    def fake(self) -> FakePublisher:
        assert isinstance(self.publisher, FakePublisher)
        return self.publisher

    @property
    def published(self) -> list[dict[str, Any]]:
        return self.fake.published

    @published.setter
    def published(self, value: list[dict[str, Any]]) -> None:
        self.fake.published = value

    @property
    def fail_sends(self) -> int:
        return self.fake.fail_sends

    @fail_sends.setter
    def fail_sends(self, value: int) -> None:
        self.fake.fail_sends = value

    def feed(self, body: dict[str, Any]) -> None:
        self.receive(body, FakeMessage())  # type: ignore[arg-type]

    def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Wake everything, then execute published trials one at a time until none remain."""
        self.sweep()
        for n in range(max_rounds):
            if not self.published:
                self.step()
                if not self.published:
                    return n
            payload = self.published.pop(0)
            self.feed(execute(payload, "inline-worker"))
            self.step()
        raise AssertionError("did not become idle")


def statements_per_step(
    settings: Settings, trials: int = 700, in_flight: int = 10, name: str = "h"
) -> list[int]:
    """SQL statements the scheduler runs for a step that records ``in_flight`` results and
    decides as many trials, early (after 50 trials) and late (after ``trials - 50``)."""
    from sqlalchemy import event

    from app.client import Client

    client = Client(settings=settings)
    camp = client.create_campaign(
        name,
        "noop",
        [{"cost": float(i)} for i in range(5)],
        context_features=["x"],
        max_in_flight=in_flight,
    )
    camp.submit_many([(None, {"x": float(i % 7)}) for i in range(trials)])
    sch = InlineScheduler(settings)
    statements = [0]

    def _count(*_a: object) -> None:
        statements[0] += 1

    for engine in {sch.engine, sch.decision_engine}:
        event.listen(engine, "before_cursor_execute", _count)
    sch.sweep()
    counts: list[int] = []
    done = 0
    while done < trials - in_flight:
        batch, sch.published = sch.published, []
        for p in batch:
            sch.feed(execute(p, "w"))
        statements[0] = 0
        sch.step()  # records in_flight results, decides in_flight trials
        done += len(batch)
        marks = (50, trials - 50)
        if len(counts) < 2 and done >= marks[len(counts)]:
            counts.append(statements[0])
    return counts


class serving:  # noqa: N801 - used as a context manager
    """Run an inline scheduler on a background thread (trials executed there) while the test
    blocks in ``solve``/``embed``/``wait``."""

    def __init__(self, settings: Settings) -> None:
        import threading

        self.scheduler = InlineScheduler(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.scheduler.run_until_idle()
            self._stop.wait(0.01)

    def __enter__(self) -> InlineScheduler:
        self._thread.start()
        return self.scheduler

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
