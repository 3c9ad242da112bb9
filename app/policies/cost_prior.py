"""A prior mean for each arm's log cost, from history (other campaigns, other families of
systems): what is known before a campaign's first result about how the arms compare.

``policy_config={"prior": {"offset": [...], "sd": [...], "slope": [[...], ...],
"center": [...], "factors": [[...], ...]}}``: arm ``a``'s log cost is expected at
``offset[a] + slope[a] . (x - center)`` above a common level (the level is the campaign's
own, learnt from its first result: costs in seconds on one machine do not transfer to
another, ratios between arms do), with standard deviation ``sd[a]``: how far a new
campaign's arm may sit from that, e.g. the spread across the families the history holds.
``slope`` (K x d, per raw context feature) and ``center`` (d) are optional; 0 and 0 without
them. ``factors`` (K x r, optional) are the directions in which arms moved together across
the history (a family where one SSOR setting is slow has every SSOR setting slow): the
campaign's arms deviate from ``offset`` by ``factors @ c`` with ``c`` standard normal, plus
an arm's own deviation of sd ``sd[a]`` (with factors, ``sd`` is what they leave over).

Pure data and arithmetic; immutable after parsing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.errors import InputError

FIELD = "policy_config.prior"
#: a log-cost offset or slope further than this from 0 (a factor of e^20) is a mistake
MAX_LOG = 20.0
#: at most this many factors (each one more model term)
MAX_FACTORS = 16


def checked_array(
    value: Any, shape: tuple[int, ...], field: str, lo: float, hi: float
) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(field, f"must be numbers of shape {shape}") from None
    if arr.shape != shape:
        raise InputError(field, f"must have shape {shape} (one per arm/feature), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min(initial=lo) < lo or arr.max(initial=hi) > hi:
        raise InputError(field, f"every value must be a number in [{lo:g}, {hi:g}]")
    return arr


@dataclass(frozen=True)
class CostPrior:
    offset: np.ndarray  # (K,) log cost above the common level
    sd: np.ndarray  # (K,) > 0
    slope: np.ndarray  # (K, d)
    center: np.ndarray  # (d,)
    factors: np.ndarray  # (K, r), r >= 0

    @classmethod
    def parse(cls, cfg: Mapping[str, Any], n_arms: int, n_features: int) -> CostPrior:
        """From ``policy_config.prior``; InputError naming the field when malformed."""
        if not isinstance(cfg, Mapping):
            raise InputError(FIELD, "must be an object with 'offset' and 'sd'")
        unknown = sorted(set(cfg) - {"offset", "sd", "slope", "center", "factors"})
        if unknown or "offset" not in cfg or "sd" not in cfg:
            raise InputError(
                FIELD,
                "takes 'offset' and 'sd' (and optionally 'slope', 'center', 'factors'); "
                f"got {unknown}",
            )
        K, d = n_arms, n_features
        offset = checked_array(cfg["offset"], (K,), f"{FIELD}.offset", -MAX_LOG, MAX_LOG)
        sd = checked_array(cfg["sd"], (K,), f"{FIELD}.sd", 1e-3, MAX_LOG)
        slope = np.zeros((K, d))
        if cfg.get("slope") is not None:
            slope = checked_array(cfg["slope"], (K, d), f"{FIELD}.slope", -MAX_LOG, MAX_LOG)
        center = np.zeros(d)
        if cfg.get("center") is not None:
            center = checked_array(cfg["center"], (d,), f"{FIELD}.center", -1e6, 1e6)
        factors = np.zeros((K, 0))
        if cfg.get("factors") is not None:
            raw = cfg["factors"]
            r = len(raw[0]) if isinstance(raw, list) and raw and isinstance(raw[0], list) else -1
            if not 0 <= r <= MAX_FACTORS:
                raise InputError(f"{FIELD}.factors", f"must be K lists of 0..{MAX_FACTORS} numbers")
            factors = checked_array(raw, (K, r), f"{FIELD}.factors", -MAX_LOG, MAX_LOG)
        return cls(offset, sd, slope, center, factors)

    def mean(self, X: np.ndarray) -> np.ndarray:
        """(n, K) prior mean log costs (above the common level) at the rows of ``X``."""
        X = np.asarray(X, float).reshape(len(X), -1)
        return self.offset[None, :] + (X - self.center) @ self.slope.T
