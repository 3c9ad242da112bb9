"""A campaign's settings as a typed, validated value, and the documented bounds on what one
campaign may ask for. The client checks them at creation (an :class:`InputError` naming the
field); the scheduler checks the stored row again when it loads the campaign (a row written
by hand, or by an older client, that breaks them marks that campaign broken, nobody else).

Pure; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import InputError, bounded

#: one trial's wall-time limit (``max_trial_seconds``, ``settings.limits.max_seconds``)
MAX_TRIAL_SECONDS = 7 * 86400.0
#: trials of one campaign in flight at once
MAX_IN_FLIGHT = 10_000
#: attempts of one trial (lease expiries re-issue it)
MAX_ATTEMPTS = 100
#: arms of one campaign (a grid is counted before it is expanded)
MAX_ARMS = 4096
#: context features of one campaign
MAX_FEATURES = 64
#: a policy's seed (stored as a 32-bit integer)
MAX_SEED = 2**31 - 1
#: settings every kind understands, as a user gives them
USER_KEYS = frozenset({"limits", "monitor_fraction", "device"})
#: what creation adds to the stored settings (kind options, a kind's descriptors)
STORED_KEYS = USER_KEYS | {"kind_options", "descriptors", "dropped_arms"}


@dataclass(frozen=True)
class CampaignSettings:
    """The generic settings of one campaign (a kind's own options are ``kind_options``)."""

    #: wall-time limit of one trial, seconds (None: no limit)
    max_seconds: float | None = None
    #: share of trials on which the kind also runs its reference (inference)
    monitor_fraction: float = 0.0
    #: ``"auto"`` (decided per worker device class), a device profile, or None
    device: str | dict[str, Any] | None = None
    kind_options: dict[str, Any] = field(default_factory=dict)


def campaign_settings(kind: str, stored: Mapping[str, Any]) -> CampaignSettings:
    """The typed settings of a stored (or about to be stored) campaign; InputError naming
    ``settings.<key>`` when one is unknown or out of its bounds."""
    if not isinstance(stored, Mapping):
        raise InputError("settings", f"must be an object, got {type(stored).__name__}")
    unknown = sorted(set(stored) - STORED_KEYS)
    if unknown:
        raise InputError(
            f"settings.{unknown[0]}",
            f"unknown setting for kind {kind!r}; allowed: "
            f"{sorted(USER_KEYS)} and the kind's own options",
        )
    limits = stored.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise InputError("settings.limits", f"must be an object, got {limits!r}")
    extra = sorted(set(limits) - {"max_seconds"})
    if extra:
        raise InputError(f"settings.limits.{extra[0]}", "unknown; allowed: ['max_seconds']")
    secs = limits.get("max_seconds")
    if secs is not None:
        secs = bounded(secs, "settings.limits.max_seconds", 0.0, MAX_TRIAL_SECONDS, open_lo=True)
    fraction = bounded(stored.get("monitor_fraction", 0.0), "settings.monitor_fraction", 0, 1)
    device = stored.get("device")
    if device is not None and device != "auto" and not isinstance(device, Mapping):
        raise InputError("settings.device", f"must be 'auto' or a device object, got {device!r}")
    options = stored.get("kind_options") or {}
    if not isinstance(options, Mapping):
        raise InputError("settings.kind_options", f"must be an object, got {options!r}")
    for key in ("descriptors", "dropped_arms"):
        if not isinstance(stored.get(key, {}), Mapping):
            raise InputError(f"settings.{key}", "must be an object")
    return CampaignSettings(
        max_seconds=secs,
        monitor_fraction=fraction,
        device=device if isinstance(device, str | None) else dict(device),
        kind_options=dict(options),
    )
