"""Tables: campaigns, arms, instances, trials (decision + execution), results, snapshots.

Ownership: the client writes campaigns, arms and instances; only the scheduler writes trials,
results and policy snapshots. Workers never touch the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.states import (
    CampaignStatus,
    InstanceStatus,
    ResultStatus,
    TrialEventKind,
    TrialState,
    check_sql,
)

TS = DateTime(timezone=True)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint(check_sql("status", CampaignStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    policy: Mapped[str] = mapped_column(String(50))
    policy_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context_features: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    max_in_flight: Mapped[int] = mapped_column(Integer, default=4)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    status: Mapped[str] = mapped_column(String(20), default="active")
    #: why the scheduler marked the campaign broken (None unless status is broken)
    broken_reason: Mapped[str | None] = mapped_column(Text)
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    n_updates: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    arms: Mapped[list[Arm]] = relationship(back_populates="campaign", order_by="Arm.index")


class Arm(Base):
    __tablename__ = "arms"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[dict[str, Any]] = mapped_column()

    campaign: Mapped[Campaign] = relationship(back_populates="arms")


class Instance(Base):
    """One problem to solve. ``status``: pending -> decided -> done | failed."""

    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("campaign_id", "seq"),
        Index("ix_instances_pending", "campaign_id", "status", "seq"),
        CheckConstraint(check_sql("status", InstanceStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    context: Mapped[dict[str, Any]] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Trial(Base):
    """A decision (arm, propensity, policy) and its execution.

    ``state``: queued (decided, outbox) -> running -> succeeded | failed. ``published_at`` is
    null until the Celery message is out: the outbox relay republishes such rows on restart.
    """

    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_open", "campaign_id", "state"),
        Index("ix_trials_outbox", "state", "published_at"),
        CheckConstraint(check_sql("state", TrialState), name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"))
    arm_index: Mapped[int] = mapped_column(Integer)
    propensity: Mapped[float] = mapped_column(Float)
    policy_name: Mapped[str] = mapped_column(String(50))
    policy_version: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(String(50), default="policy")
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS)
    error: Mapped[str | None] = mapped_column(Text)
    #: the worker device class the trial was decided for (routed to its queue); None: any
    device_class: Mapped[str | None] = mapped_column(String(50))
    #: the cost after which the caller should give up on the arm and solve with the
    #: campaign's fallback arm (``policy_config.fallback``); None: no budget
    budget: Mapped[float | None] = mapped_column(Float)
    #: ``budget``'s unit: None, the campaign's cost; "matvec", products of the instance's
    #: matrix with a vector (converted where the trial runs)
    budget_unit: Mapped[str | None] = mapped_column(String(16))
    #: an external trial's tell: when it came and what it said (the scheduler records it
    #: from here when the tell's message was lost)
    told_at: Mapped[datetime | None] = mapped_column(TS)
    told: Mapped[dict[str, Any] | None] = mapped_column()


class Result(Base):
    """What a worker reported for one attempt of a trial; ``id`` orders policy updates."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("trial_id", "attempt"),
        Index("ix_results_campaign_recorded", "campaign_id", "recorded_at"),
        CheckConstraint(check_sql("status", ResultStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    cost: Mapped[float | None] = mapped_column(Float)
    iterations: Mapped[int | None] = mapped_column(Integer)
    converged: Mapped[bool | None] = mapped_column(Boolean)
    residual: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(50))
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any] | None] = mapped_column()
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the cost is a lower bound (stopped at its budget, or not converged): applied to the
    #: policy as a censored observation
    censored: Mapped[bool | None] = mapped_column(Boolean)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    recorded_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class TrialEvent(Base):
    """Something that happened to a trial outside a result: a lease that ran out (the
    attempt was re-issued or the trial failed). Written only by the scheduler."""

    __tablename__ = "trial_events"
    __table_args__ = (
        Index("ix_trial_events_campaign_at", "campaign_id", "at"),
        CheckConstraint(check_sql("event", TrialEventKind), name="event"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    #: ``lease_expired`` (re-issued as attempt + 1) or ``lease_failed`` (no attempts left)
    event: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class PolicySnapshot(Base):
    """Serialized policy state after applying every result with ``id <= last_result_id``."""

    __tablename__ = "policy_snapshots"
    __table_args__ = (Index("ix_policy_snapshots_latest", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    policy_name: Mapped[str] = mapped_column(String(50))
    policy_version: Mapped[str] = mapped_column(String(50))
    n_updates: Mapped[int] = mapped_column(Integer)
    last_result_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class WorkerRow(Base):
    """A worker process as it announced itself: its device class decides which arms and
    context features the scheduler uses for the trials routed to it. Written only by the
    scheduler (from the workers' announcements on the results queue)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    device_class: Mapped[str] = mapped_column(String(50))
    profile: Mapped[dict[str, Any]] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)


class StoreBlob(Base):
    """A blob of the PostgreSQL array store (its bytes in ``store_chunks``)."""

    __tablename__ = "store_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class StoreChunk(Base):
    __tablename__ = "store_chunks"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("store_blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoreTag(Base):
    """A name for a blob of the PostgreSQL array store (a chained instance's solution, by
    instance id), or for why there is none (the trial's error); the latest write wins."""

    __tablename__ = "store_tags"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class BlobRef(Base):
    """A campaign's use of a stored blob (an instance's matrix, right-hand side or initial
    guess; a result's solution), whichever store holds it: ``banditq store gc`` keeps every
    blob referred to here, and ``store stats`` sums ``nbytes`` per campaign."""

    __tablename__ = "blob_refs"
    __table_args__ = (Index("ix_blob_refs_sha256", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    nbytes: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class DeadLetter(Base):
    """A message the scheduler refused (malformed, or failing the same way on every try):
    acknowledged, kept here with the reason, counted. ``body`` is its JSON text (or repr),
    cut to 64 KiB. Written only by the scheduler."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: which consumer refused it: "results" (worker -> scheduler) or "events" (client)
    source: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)


class DatabaseIdentity(Base):
    """One row: a random id given to this database when its schema was created. Chained
    solutions are tagged with it in the array store, so a reset database that keeps its
    store never reads an earlier run's solution for a reused instance id."""

    __tablename__ = "database_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
