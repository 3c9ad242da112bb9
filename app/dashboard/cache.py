"""A short-lived cache of one campaign's report data and rendered plots, so that the page
and its images (several requests within a second) read the database once.

Thread-safe: one lock guards the entries; rendering is serialized under a second lock
(matplotlib's text and font caches are shared by every figure in the process).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from app.report import data as rdata
from app.report.estimates import Counterfactual, counterfactuals
from app.report.plots import PLOTS, png
from app.report.summary import summary


@dataclass
class Entry:
    data: rdata.ReportData
    cf: Counterfactual
    summary: dict[str, Any]
    loaded: float
    pngs: dict[str, bytes] = field(default_factory=dict)


class CampaignCache:
    def __init__(self, engine: Engine, ttl_s: float = 1.0, max_entries: int = 32) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._render = threading.Lock()

    def get(self, name: str) -> Entry:
        """Fresh data (at most ``ttl_s`` old); ``NotFoundError`` for an unknown campaign."""
        now = time.monotonic()
        with self._lock:
            e = self._entries.get(name)
            if e is not None and now - e.loaded < self.ttl_s:
                return e
        data = rdata.load(self.engine, name)
        cf = counterfactuals(data)
        entry = Entry(data, cf, summary(data, cf), time.monotonic())
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[name] = entry
        return entry

    def plot(self, name: str, kind: str) -> bytes:
        entry = self.get(name)
        cached = entry.pngs.get(kind)
        if cached is None:
            with self._render:
                cached = png(PLOTS[kind](entry.data, entry.cf))
            entry.pngs[kind] = cached
        return cached
