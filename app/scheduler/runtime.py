"""In-memory state of one campaign inside the scheduler: policy, arms, in-flight count."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.campaign_settings import campaign_settings
from app.contexts import context_vector
from app.cost_units import learnt_cost
from app.policies.base import PROBE, Policy, arm_positions
from app.policies.fallback import fallback_arm
from app.policies.registry import make_policy
from app.scheduler.store import SchedulerStore, store_for
from models import Arm, Campaign
from models.states import CampaignStatus
from tasks.kinds import get_kind
from tasks.kinds.external import DEFAULT_TELL_TIMEOUT
from tasks.messages import TrialMessage


class CampaignBroken(Exception):
    """The campaign is broken (``reason``): nothing is decided or applied for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class CampaignRuntime:
    """Owned by the scheduler thread; rebuilt from the database whenever in doubt."""

    id: int
    name: str
    kind: str
    features: list[str]
    arm_ids: list[int]
    arm_values: list[dict[str, Any]]
    policy: Policy
    policy_name: str
    max_in_flight: int
    max_attempts: int
    settings: dict[str, Any]
    in_flight: int = 0
    last_result_id: int = 0
    since_snapshot: int = 0
    #: time.monotonic() of the last snapshot (0: none yet in this process)
    snapshot_at: float = 0.0
    maybe_pending: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    #: the database's identity: trial messages carry it (chain tags name it)
    database_id: str | None = None
    #: time.monotonic() of the last decision or result (idle campaigns are evicted)
    last_active: float = field(default_factory=time.monotonic)
    #: policy_config.fallback's arm: a decision's budget reaches the worker with it
    fallback_arm: int | None = None
    #: policy_config.cost_unit: the unit the policy learns costs in (None: the campaign's)
    cost_unit: str | None = None

    def learnt_cost(self, cost: float | None, metrics: dict[str, Any] | None) -> float:
        """A result's cost as the policy learns it: in :attr:`cost_unit`, converted by the
        kind from the result's metrics (``ValueError`` when they cannot tell)."""
        return learnt_cost(self.kind, self.cost_unit, cost, metrics)

    def vector(self, context: dict[str, Any]) -> np.ndarray:
        return context_vector(context, self.features)

    @property
    def auto_device(self) -> bool:
        """Decided per worker device class (see app.scheduler.devices), not for one fixed device."""
        return self.settings.get("device") == "auto"

    def allowed_on(self, device_type: str) -> np.ndarray:
        """Per arm: can a worker of ``device_type`` run it (cached per type)."""
        cache = self.extra.setdefault("allowed", {})
        if device_type not in cache:
            kind = get_kind(self.kind)
            cache[device_type] = np.array(
                [kind.arm_unsupported(a, device_type) is None for a in self.arm_values]
            )
        return cache[device_type]  # type: ignore[no-any-return]

    def device_context(self, context: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
        """``context`` with the device features of ``profile`` filled in."""
        dev = get_kind(self.kind).device_features(profile)
        return {**context, **{k: v for k, v in dev.items() if k in self.features}}

    def message(
        self,
        trial_uuid: str,
        attempt: int,
        spec: dict[str, Any],
        arm: int,
        reason: str = "",
        seq: int = 0,
        device_class: str | None = None,
        instance: int | None = None,
        budget: float | None = None,
        budget_unit: str | None = None,
    ) -> TrialMessage:
        """The message of one attempt of a trial of this campaign (a re-issued attempt gets
        the same body: the options depend only on the decision and the seq). A decision's
        ``budget`` goes in the options with the fallback arm (``budget``, ``fallback_arm``,
        and ``budget_unit`` when it is not the cost's): a kind that can stop an arm runs the
        fallback once the arm has spent its budget."""
        options = get_kind(self.kind).decision_options(
            self.settings.get("kind_options"), self.monitored(reason, seq)
        )
        if budget is not None and self.fallback_arm is not None:
            fallback = self.arm_values[self.fallback_arm]
            options = {**(options or {}), "budget": budget, "fallback_arm": fallback}
            if budget_unit is not None:
                options["budget_unit"] = budget_unit
        return TrialMessage(
            trial_uuid,
            attempt,
            self.name,
            self.kind,
            spec,
            self.arm_values[arm],
            self.settings.get("limits", {}),
            options,
            device_class,
            instance,
            self.database_id,
        )

    def monitored(self, reason: str, seq: int) -> bool:
        """Run the reference on this trial? Always for a quality probe, else for a
        deterministic pseudo-random ``monitor_fraction`` of instances."""
        if reason == PROBE:
            return True
        return sampled(self.id, seq, float(self.settings.get("monitor_fraction", 0.0)))

    @property
    def external(self) -> bool:
        """Trials of this campaign are run by the caller (ask/tell), never by a worker."""
        return bool(getattr(get_kind(self.kind), "external", False))

    @property
    def tell_timeout(self) -> float:
        """Seconds an external decision waits for its tell before it is abandoned."""
        t = (self.settings.get("kind_options") or {}).get("tell_timeout")
        return float(t) if isinstance(t, int | float) else DEFAULT_TELL_TIMEOUT

    @property
    def quality_floor(self) -> float | None:
        floor = (self.settings.get("kind_options") or {}).get("quality_floor")
        return float(floor) if isinstance(floor, int | float) else None


def sampled(campaign_id: int, seq: int, fraction: float) -> bool:
    """A stable coin: the same (campaign, seq) always lands the same way."""
    if fraction <= 0.0:
        return False
    h = hashlib.blake2b(f"{campaign_id}:{seq}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64 < fraction


def build_policy(camp: Campaign, arms: list[Arm]) -> Policy:
    values = [a.value for a in arms]
    return make_policy(
        camp.policy,
        len(arms),
        len(camp.context_features),
        arms=arm_positions(values),
        seed=camp.seed,
        config=camp.policy_config,
        arm_values=values,
    )


def load_runtime(
    session: Session, campaign_id: int, store: SchedulerStore | None = None
) -> CampaignRuntime:
    """Policy from its latest snapshot plus every applied result recorded after it."""
    store = store or store_for(session.get_bind())  # type: ignore[arg-type]
    camp, arms = store.campaign_with_arms(session, campaign_id)
    if camp.status == CampaignStatus.broken.value:
        raise CampaignBroken(camp.broken_reason or "marked broken")
    get_kind(camp.kind)  # a kind missing here breaks the campaign now, not its first message
    campaign_settings(camp.kind, camp.settings or {})  # rows written by hand or older clients
    policy = build_policy(camp, arms)
    rt = CampaignRuntime(
        id=camp.id,
        name=camp.name,
        kind=camp.kind,
        features=list(camp.context_features),
        arm_ids=[a.id for a in arms],
        arm_values=[a.value for a in arms],
        policy=policy,
        policy_name=camp.policy,
        max_in_flight=camp.max_in_flight,
        max_attempts=camp.max_attempts,
        settings=dict(camp.settings or {}),
        database_id=store.database_identity(session),
        fallback_arm=fallback_arm(camp.policy_config),
        cost_unit=(camp.policy_config or {}).get("cost_unit"),
    )
    snap = store.latest_snapshot(session, camp.id)
    if snap is not None and snap.policy_version == policy.version:
        policy.set_state(snap.state)
        rt.last_result_id = snap.last_result_id
    replay_results(session, store, rt, after=rt.last_result_id)
    rt.in_flight = store.open_trial_count(session, camp.id)
    return rt


def replay_results(session: Session, store: SchedulerStore, rt: CampaignRuntime, after: int) -> int:
    """Apply the applied results with id > ``after`` in id order (the live update order)."""
    rows = store.applied_results_after(session, rt.id, after)
    for rid, cost, arm_index, context, quality, censored, metrics in rows:
        cost = rt.learnt_cost(cost, metrics)
        apply_result(rt.policy, rt.vector(context), arm_index, cost, quality, censored)
        rt.last_result_id = rid
    return len(rows)


def apply_result(
    policy: Policy,
    x: np.ndarray,
    arm: int,
    cost: float | None,
    quality: float | None,
    censored: bool | None,
) -> None:
    """One applied result as the policy learns it, live and in a replay alike: a censored
    cost is a lower bound (:meth:`Policy.update_censored`)."""
    if censored:
        policy.update_censored(x, arm, float(cost or 0.0), quality)
    else:
        policy.update(x, arm, float(cost or 0.0), quality)
