"""Creating a campaign: every argument validated, the kind's and policy's hooks applied,
then one transaction writes the campaign, its arms and (warm-started) its first snapshot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.campaign_settings import (
    MAX_ARMS,
    MAX_ATTEMPTS,
    MAX_FEATURES,
    MAX_IN_FLIGHT,
    MAX_SEED,
    MAX_TRIAL_SECONDS,
    STORED_KEYS,
    USER_KEYS,
    campaign_settings,
)
from app.client import store
from app.client.arms import FEATURE_RE, NAME_RE, expand_arms
from app.client.campaign import Campaign
from app.policies.base import arm_positions
from app.policies.registry import make_policy, policy_class, resolve_name
from models import Arm, PolicySnapshot
from models import Campaign as CampaignRow
from tasks.errors import InputError, bounded, bounded_int
from tasks.kinds import get_kind

if TYPE_CHECKING:
    from app.client.session import Client


def create_campaign(
    client: Client,
    name: str,
    kind: str,
    arms: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | str,
    policy: str = "default",
    context_features: Sequence[str] = (),
    *,
    policy_config: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_in_flight: int | None = None,
    max_attempts: int = 3,
    exist_ok: bool = False,
    warm_start_from: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    max_trial_seconds: float | None = None,
    tell_timeout: float | None = None,
    cost: str | None = None,
) -> Campaign:
    """Create a campaign (validated in full before anything is written).

    ``arms`` is a grid (``{"omega": [1.0, 1.5]}``) or a list of arm mappings; ``policy``
    a registered policy (``"default"``: the kind's default); ``context_features`` the
    names each instance's context supplies (a kind may compute some at submit time);
    ``warm_start_from`` earlier campaigns (same kind and arms) whose results seed the
    policy; ``settings`` kind options; ``exist_ok`` returns an existing campaign.
    ``max_in_flight``: trials decided and not finished at once (default 4; 10,000 for an
    ``external`` campaign, whose callers hold decisions while they solve).
    ``tell_timeout`` and ``cost``: an ``external`` campaign's options (see
    :mod:`tasks.kinds.external`)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(
            "name",
            "must be 1-200 characters of letters, digits and . _ : - (starting with a "
            f"letter or digit), got {name!r}",
        )
    kind_impl = get_kind(kind)
    if isinstance(arms, str):  # a named set of the kind's, e.g. "default"
        named = kind_impl.default_arms(arms)
        if named is None:
            raise InputError("arms", f"kind {kind!r} has no arm set named {arms!r}; list the arms")
        arms = named
    _check_arm_count(arms)
    arm_list = expand_arms(arms)
    kind_impl.validate_arms(arm_list)
    if not isinstance(policy, str) or not policy:
        raise InputError("policy", f"must be a policy name, got {policy!r}")
    try:
        n_features = len(list(context_features))
    except TypeError:
        n_features = 0  # not a list of names: refused below, naming the field
    policy = resolve_name(policy, kind_impl.default_policy, n_features)
    policy_class(policy)  # unknown, or failing to import: an error naming it, now
    if isinstance(context_features, str):
        raise InputError(
            "context_features", f"must be a list of names, got the string {context_features!r}"
        )
    features = list(context_features)
    if len(features) > MAX_FEATURES:
        raise InputError(
            "context_features", f"at most {MAX_FEATURES} features, got {len(features)}"
        )
    for i, f in enumerate(features):
        if not isinstance(f, str) or not FEATURE_RE.match(f):
            raise InputError(f"context_features[{i}]", f"must be an identifier, got {f!r}")
    if len(set(features)) != len(features):
        raise InputError("context_features", "contains duplicates")
    if max_in_flight is None:
        max_in_flight = MAX_IN_FLIGHT if getattr(kind_impl, "external", False) else 4
    bounded_int(max_in_flight, "max_in_flight", 1, MAX_IN_FLIGHT)
    bounded_int(max_attempts, "max_attempts", 1, MAX_ATTEMPTS)
    bounded_int(seed, "seed", 0, MAX_SEED)
    if settings is not None and not isinstance(settings, Mapping):
        raise InputError("settings", f"must be a mapping, got {type(settings).__name__}")
    extra = dict(settings or {})
    for key, value in (("tell_timeout", tell_timeout), ("cost", cost)):
        if value is not None:
            if not getattr(kind_impl, "external", False):
                raise InputError(key, f"is an option of external campaigns, not of {kind!r}")
            extra[key] = value
    reserved = sorted(set(extra) & (STORED_KEYS - USER_KEYS))
    if reserved:
        raise InputError(f"settings.{reserved[0]}", "is set by banditq; give the kind's options")
    if max_trial_seconds is not None:
        mts = bounded(max_trial_seconds, "max_trial_seconds", 0.0, MAX_TRIAL_SECONDS, open_lo=True)
        limits = extra.get("limits", {})
        if not isinstance(limits, Mapping):
            raise InputError("settings.limits", f"must be an object, got {limits!r}")
        extra["limits"] = {**limits, "max_seconds": mts}
    options = kind_impl.campaign_options(extra)
    if options:
        extra["kind_options"] = options
    if policy_config is not None and not isinstance(policy_config, Mapping):
        raise InputError("policy_config", f"must be a mapping, got {type(policy_config).__name__}")
    config = dict(policy_config or {})
    arm_list, extra, config, features = kind_impl.prepare_campaign(
        arm_list, extra, policy, config, features
    )
    campaign_settings(kind, extra)  # what is stored: unknown keys and bounds, field named
    given = config.get("fallback")
    levelled = isinstance(given, Mapping) and given.get("level") is not None
    if levelled and "matvec" not in kind_impl.budget_units:
        raise InputError(
            "policy_config.fallback.level",
            f"the {kind} kind cannot budget in matrix-vector products: drop 'level'",
        )
    unit = config.get("cost_unit")
    if unit is not None and unit not in kind_impl.cost_units(extra):
        units = list(kind_impl.cost_units(extra)) or "none"
        raise InputError(
            "policy_config.cost_unit",
            f"the {kind} kind with these settings gives its policy costs in {units}, "
            f"not {unit!r}: drop 'cost_unit'",
        )
    try:  # build once now so a bad config fails here, not in the scheduler
        probe = make_policy(
            policy,
            len(arm_list),
            len(features),
            arms=arm_positions(arm_list),
            seed=seed,
            config=config,
            arm_values=arm_list,
        )
    except ValueError as exc:
        raise InputError("policy_config", str(exc)) from exc
    with client.Session() as s, s.begin():
        existing = store.campaign_named(s, name)
        if existing is not None:
            if exist_ok:
                return Campaign(client, existing.id, name)
            raise InputError("name", f"campaign {name!r} already exists (exist_ok=True reuses)")
        row = CampaignRow(
            name=name,
            kind=kind,
            policy=policy,
            policy_config=config,
            context_features=features,
            seed=seed,
            max_in_flight=max_in_flight,
            max_attempts=max_attempts,
            settings=extra,
        )
        s.add(row)
        s.flush()
        for i, a in enumerate(arm_list):
            label = kind_impl.arm_label(a)
            s.add(Arm(campaign_id=row.id, index=i, name=label, value=a))
        if warm_start_from:
            _warm_start(s, row, probe, list(warm_start_from))
        cid = row.id
    return Campaign(client, cid, name)


def _check_arm_count(arms: Any) -> None:
    """At most MAX_ARMS arms, counted before a grid is expanded (a grid's product can be
    far larger than its lists)."""
    if isinstance(arms, Mapping):
        count = 1
        for vals in arms.values():
            count *= len(vals) if hasattr(vals, "__len__") else 1
    elif isinstance(arms, Sequence) and not isinstance(arms, str | bytes):
        count = len(arms)
    else:
        return  # not a grid or a list: expand_arms names the field
    if count > MAX_ARMS:
        raise InputError("arms", f"at most {MAX_ARMS} arms, got {count}")


def _warm_start(s: Any, row: CampaignRow, policy: Any, sources: list[str]) -> None:
    """Seed the new policy with earlier campaigns' results (same kind, same arms)."""
    from app.client.warmstart import warm_state

    state = warm_state(s, row, policy, sources)
    s.add(
        PolicySnapshot(
            campaign_id=row.id,
            policy_name=policy.name,
            policy_version=policy.version,
            n_updates=policy.n_updates,
            last_result_id=0,
            state=state,
        )
    )
