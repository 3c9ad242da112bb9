"""The states rows move through, as enums whose values are what the database stores (each
column has a CHECK constraint listing them: migration 0005). Member names equal their values,
so any adapter (psycopg dumps an Enum by name) writes the same text."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    """active (takes instances), paused (set by an operator in SQL: submits are refused;
    what was submitted still runs) or broken (set by the scheduler when the campaign's own
    settings, plugins or policy fail: ``broken_reason`` says why; nothing more is decided for
    it, its results are kept and not applied; every other campaign goes on)."""

    active = "active"
    paused = "paused"
    broken = "broken"


class InstanceStatus(StrEnum):
    """pending -> decided -> done | failed."""

    pending = "pending"
    decided = "decided"
    done = "done"
    failed = "failed"


class TrialState(StrEnum):
    """queued (decided; in the outbox until published) -> running (a heartbeat came) ->
    succeeded | failed. An external (ask/tell) trial is running from its decision and
    ``abandoned`` when no tell came within the campaign's ``tell_timeout``: not a failure
    of its arm, never a cost to the policy."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    abandoned = "abandoned"


class ResultStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


#: trial states that still hold an in-flight slot
OPEN_STATES: tuple[TrialState, ...] = (TrialState.queued, TrialState.running)
#: instance statuses a waiting client stops at
FINAL_STATUSES: tuple[InstanceStatus, ...] = (InstanceStatus.done, InstanceStatus.failed)


def check_sql(column: str, enum: type[StrEnum]) -> str:
    """The CHECK constraint text allowing exactly ``enum``'s values in ``column``."""
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class TrialEventKind(StrEnum):
    """What the scheduler records in ``trial_events``."""

    lease_expired = "lease_expired"  # re-issued as a new attempt
    lease_failed = "lease_failed"  # out of attempts: the trial failed
    retried = "retried"  # a worker failed it for a transient reason: re-issued
    abandoned = "abandoned"  # an external trial not told within its tell_timeout
