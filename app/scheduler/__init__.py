"""The scheduler: decide an arm per pending instance, publish trials, learn from results.

Its parts, one concern each (all owned by the scheduler's thread; a burst's decision chunks
are written on a writer thread of their own, one at a time, see ``decisions``):

* ``service``: the :class:`Scheduler`, its loop and its step (what runs in what transaction);
* ``consumer``: receiving, typed parsing, acknowledgement of messages (results, heartbeats,
  worker announcements, wake-ups);
* ``recording``: results written idempotently and applied to policies; heartbeats;
* ``decisions``: trial rows in chunks (a chunk written while the next one is chosen);
  ``choosing``: each instance's arm with its propensity, from its campaign's policy;
  ``notices``: the askers' NOTIFY payloads;
* ``outbox`` and ``publishing``: send after commit, mark after send; the injected publisher;
* ``reconciler``: the sweep (pending work no message announced, the outbox relay, lease
  expiry and re-issue);
* ``snapshots``: policy state snapshots;
* ``hooks`` (metrics), ``limits`` (wall-time limits): cross-cutting concerns behind one
  interface each;
* ``store``: every statement the scheduler runs (the parts call named methods, never build
  SQL): the portable forms for SQLite, set-based ones and NOTIFY for PostgreSQL;
* ``core`` (what the parts share), ``runtime`` (one campaign in memory), ``devices`` (live
  worker device classes), ``locks`` (one scheduler per database).
"""

from __future__ import annotations

from app.scheduler.service import Scheduler

__all__ = ["Scheduler"]
