"""Setting up an ``inference`` campaign: normalize its settings, arms and policy config
(the kind's ``prepare_campaign`` hook; runs in the client when the campaign is created).

User-level settings of an ``inference`` campaign (all optional)::

    model             import path of a ModelBundle factory (default: bundled all-MiniLM-L6-v2)
    quality_floor     mean cosine vs the fp32 reference that a batch must reach, in (0, 1)
    monitor_fraction  share of batches on which the reference also runs (default 0.1)
    device            "auto" (the workers' devices decide, per trial: arms each device class can
                      run, its features in the context), "cpu", "cuda", or
                      {"type", "capability", "threads"} (one fixed device)
    repeats           timed runs per trial, median reported (default 1)

They are stored normalized: ``kind_options`` (what workers get), the device profile and the
model descriptors (context features), and the arms dropped because the device cannot run them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tasks.errors import InputError
from tasks.kinds.accel import AccelArm, arms_for_device

log = logging.getLogger("banditq.inference")

AUTO_DEVICE = {"type": "cpu", "capability": 0.0, "threads": 0.0}


def _number(value: Any, field: str, lo: float, hi: float, open_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, f"must be a number, got {value!r}")
    v = float(value)
    if not (lo < v if open_lo else lo <= v) or not v <= hi or v != v:
        raise InputError(field, f"must be in {'(' if open_lo else '['}{lo}, {hi}], got {value!r}")
    return v


def _device(value: Any) -> dict[str, Any] | str:
    if value == "auto":
        return "auto"  # the workers' devices decide (see app.scheduler.devices)
    if value in ("cpu", "cuda"):
        return {"type": value, "capability": 0.0, "threads": float(os.cpu_count() or 1)}
    if isinstance(value, dict) and value.get("type") in ("cpu", "cuda"):
        return {
            "type": value["type"],
            "capability": _number(
                value.get("capability", 0.0), "settings.device.capability", 0, 100
            ),
            "threads": _number(value.get("threads", 1.0), "settings.device.threads", 1, 4096),
        }
    raise InputError(
        "settings.device",
        f"must be 'auto', 'cpu', 'cuda' or {{'type': 'cpu'|'cuda', ...}}, got {value!r}",
    )


def prepare_campaign(
    arms: list[dict[str, Any]],
    settings: dict[str, Any],
    policy: str,
    config: dict[str, Any],
    features: list[str],
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], list[str]]:
    """Validated (arms, settings, policy_config, features) of a new inference campaign."""
    from tasks.kinds.inference import DEFAULT_MODEL, FEATURES
    from tasks.kinds.inference_models import load_bundle

    extra = dict(settings)
    allowed = {"model", "quality_floor", "monitor_fraction", "device", "repeats", "limits"}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise InputError(f"settings.{unknown[0]}", f"unknown; allowed: {sorted(allowed)}")
    model = extra.pop("model", DEFAULT_MODEL)
    if not isinstance(model, str):
        raise InputError("settings.model", f"must be an import path string, got {model!r}")
    try:
        bundle = load_bundle(model)
    except InputError as exc:
        raise InputError("settings.model", exc.message) from exc
    floor = extra.pop("quality_floor", None)
    if floor is not None:
        floor = _number(floor, "settings.quality_floor", 0.0, 1.0, open_lo=True)
        if floor >= 1.0:
            raise InputError("settings.quality_floor", "must be below 1 (1 allows only fp32)")
    fraction = _number(extra.pop("monitor_fraction", 0.1), "settings.monitor_fraction", 0, 1)
    repeats = extra.pop("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 50:
        raise InputError("settings.repeats", f"must be an integer in 1..50, got {repeats!r}")
    device = _device(extra.pop("device", "auto"))
    if device == "auto":
        # Every valid arm is kept: each decision uses those its worker's device can run.
        keep = [AccelArm.parse(a, f"arms[{i}]").to_json() for i, a in enumerate(arms)]
        dropped: dict[str, str] = {}
    else:
        assert isinstance(device, dict)
        keep, dropped = arms_for_device(arms, str(device["type"]))
        if dropped:
            log.info("arms dropped for device %s: %s", device["type"], dropped)
        if not keep:
            raise InputError("arms", f"no arm can run on a {device['type']} device: {dropped}")
    if AccelArm().to_json() not in keep:
        raise InputError(
            "arms", "must include the fp32 reference arm {} (quality is measured against it)"
        )
    if not features:
        features = list(FEATURES)
    for i, f in enumerate(features):
        if f not in FEATURES:
            raise InputError(f"context_features[{i}]", f"{f!r} is not one of {list(FEATURES)}")
    extra.update(
        kind_options={"model": model, "quality_floor": floor, "repeats": repeats},
        monitor_fraction=fraction,
        device=device,
        descriptors=bundle.descriptors(),
        dropped_arms=dropped,
    )
    cfg = dict(config)
    if policy == "constrained-ts":
        cfg.setdefault("quality_floor", floor)
        cfg.setdefault("reference_arm", keep.index(AccelArm().to_json()))
    return keep, extra, cfg, features
