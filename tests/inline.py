"""Drive the real Scheduler without a broker: capture what it publishes, execute it with the
real task body, and hand the result messages back. For fast unit tests of scheduling logic."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.scheduler import Scheduler
from tasks.run_trial import execute


class FakeMessage:
    def __init__(self) -> None:
        self.acked = False

    def ack(self, multiple: bool = False) -> None:
        self.acked = True

    def requeue(self) -> None:
        return None


class InlineScheduler(Scheduler):
    def __init__(self, settings: Settings, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.published: list[dict[str, Any]] = []

    def _send(self, payloads: list[dict[str, Any]]) -> list[str]:
        self.published.extend(payloads)
        return [p["trial"] for p in payloads]

    def feed(self, body: dict[str, Any]) -> None:
        self._buffer.append((body, FakeMessage()))  # type: ignore[arg-type]

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
