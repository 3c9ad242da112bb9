"""The scheduler's registry of worker device classes, from the workers' own announcements.

Campaigns whose device is ``auto`` are decided per device class: the scheduler picks a class
among the live workers (weighted by their pool slots), fills the instance's device context
features from that class's profile, restricts the arms to those the class can run, and routes
the trial to the class's queue. So the workers' devices decide, not the machine that created
the campaign. Owned by the scheduler thread (not thread-safe).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.scheduler.store import SchedulerStore
from tasks.messages import WorkerAnnouncement, device_class

log = logging.getLogger("banditq.devices")


@dataclass
class WorkerInfo:
    device_class: str
    profile: dict[str, Any]
    slots: int
    seen: float  # time.monotonic() of the last announcement


def clean_profile(raw: Any) -> dict[str, Any] | None:
    """A device profile from a message (type, capability, threads), or None if malformed."""
    if not isinstance(raw, dict) or raw.get("type") not in ("cpu", "cuda"):
        return None
    out: dict[str, Any] = {"type": raw["type"]}
    for key, default in (("capability", 0.0), ("threads", 1.0)):
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            return None
        out[key] = float(v)
    return out


class DeviceRegistry:
    """Live worker device classes. A worker is live for ``ttl`` seconds after it announced."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.workers: dict[str, WorkerInfo] = {}
        self.loaded = False

    def load(self, session: Session, store: SchedulerStore) -> None:
        """Workers announced within ``ttl`` (after a scheduler restart)."""
        since = datetime.now(UTC) - timedelta(seconds=self.ttl)
        rows = store.workers_seen_since(session, since)
        now_wall, now = datetime.now(UTC), time.monotonic()
        for r in rows:
            profile = clean_profile(r.profile)
            last = r.last_seen if r.last_seen.tzinfo else r.last_seen.replace(tzinfo=UTC)
            if profile is not None:
                age = (now_wall - last).total_seconds()
                slots = int((r.profile or {}).get("slots", 1))
                self.workers[r.name] = WorkerInfo(r.device_class, profile, slots, now - age)
        self.loaded = True

    def record(
        self, session: Session, store: SchedulerStore, messages: list[WorkerAnnouncement]
    ) -> bool:
        """Store announcements; True when a class that had no live worker now has one."""
        before = set(self.classes())
        now = datetime.now(UTC)
        for m in messages:
            name, profile, slots = m.worker, clean_profile(m.profile), m.slots
            if profile is None:
                log.warning("ignoring a malformed worker announcement: %.200r", m)
                continue
            cls = device_class(profile)
            if store.save_worker(session, name, cls, {**profile, "slots": slots}, now):
                log.info("worker %s announced: %s, %d slot(s)", name, cls, slots)
            self.workers[name] = WorkerInfo(cls, profile, slots, time.monotonic())
        return bool(set(self.classes()) - before)

    def classes(self) -> dict[str, tuple[dict[str, Any], int]]:
        """Live classes: class -> (profile, total slots), in a stable order."""
        now = time.monotonic()
        out: dict[str, tuple[dict[str, Any], int]] = {}
        for w in sorted(self.workers.values(), key=lambda w: w.device_class):
            if now - w.seen > self.ttl:
                continue
            profile, slots = out.get(w.device_class, (w.profile, 0))
            out[w.device_class] = (profile, slots + w.slots)
        return out

    def pick(self, turn: int) -> tuple[str, dict[str, Any]] | None:
        """The class for a campaign's ``turn``-th decision: weighted round robin over the
        live classes by their slots (None when no worker is live)."""
        live = self.classes()
        total = sum(slots for _p, slots in live.values())
        if not total:
            return None
        k = turn % total
        for cls, (profile, slots) in live.items():
            if k < slots:
                return cls, profile
            k -= slots
        raise AssertionError("unreachable")

    def route(
        self, rt: Any, context: dict[str, Any]
    ) -> tuple[str, dict[str, Any], np.ndarray] | None:
        """For a device-``auto`` campaign's next decision: (device class, ``context`` with
        that class's device features, the arms it can run); None while no worker is live."""
        turn = rt.extra.get("turn", 0)
        picked = self.pick(turn)
        if picked is None:
            return None
        rt.extra["turn"] = turn + 1
        cls, profile = picked
        return cls, rt.device_context(context, profile), rt.allowed_on(str(profile["type"]))
