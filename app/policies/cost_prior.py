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

``level`` (optional: ``{"offset", "sd", "slope", "center"}``) states the common level too,
for costs in a unit that does carry across machines (``policy_config.cost_unit="matvec"``:
products of the instance's matrix with a vector): ``offset + slope . (x - center)`` is then
the log cost of the arm the offsets are relative to (``offset[a] == 0``), and the campaign's
level may sit ``sd`` from it (one model term shared by every arm), so decisions use the
prior from the first one and the first result moves the level only as far as it says.

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
    #: the common level's (offset, sd, slope (d,), center (d,)), or None: learnt from the
    #: first result
    level: tuple[float, float, np.ndarray, np.ndarray] | None = None

    @classmethod
    def parse(cls, cfg: Mapping[str, Any], n_arms: int, n_features: int) -> CostPrior:
        """From ``policy_config.prior``; InputError naming the field when malformed."""
        if not isinstance(cfg, Mapping):
            raise InputError(FIELD, "must be an object with 'offset' and 'sd'")
        unknown = sorted(set(cfg) - {"offset", "sd", "slope", "center", "factors", "level"})
        if unknown or "offset" not in cfg or "sd" not in cfg:
            raise InputError(
                FIELD,
                "takes 'offset' and 'sd' (and optionally 'slope', 'center', 'factors', "
                f"'level'); got {unknown}",
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
        level = None if cfg.get("level") is None else parse_level(cfg["level"], d)
        return cls(offset, sd, slope, center, factors, level)

    def mean(self, X: np.ndarray) -> np.ndarray:
        """(n, K) prior mean log costs (above the common level) at the rows of ``X``."""
        X = np.asarray(X, float).reshape(len(X), -1)
        out = self.offset[None, :] + (X - self.center) @ self.slope.T
        if self.level is not None:
            base, _sd, slope, center = self.level
            out = out + (base + (X - center) @ slope)[:, None]
        return out


def parse_level(cfg: Any, d: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """``policy_config.prior.level`` as (offset, sd, slope, center); InputError naming the
    field when malformed."""
    field = f"{FIELD}.level"
    if not isinstance(cfg, Mapping) or "offset" not in cfg or "sd" not in cfg:
        raise InputError(field, "must be an object with 'offset' and 'sd' (and 'slope', 'center')")
    unknown = sorted(set(cfg) - {"offset", "sd", "slope", "center"})
    if unknown:
        raise InputError(field, f"takes 'offset', 'sd', 'slope' and 'center'; got {unknown}")
    # a level is a log cost in an absolute unit: e^-20 .. e^40 of it
    offset, slope, center = linear_in_context(cfg, d, field, -MAX_LOG)
    sd = float(checked_array(cfg["sd"], (), f"{field}.sd", 1e-3, MAX_LOG))
    return offset, sd, slope, center


def linear_in_context(
    cfg: Mapping[str, Any], d: int, field: str, offset_lo: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """``offset`` (in [offset_lo, e^40's log]), ``slope`` (d) and ``center`` (d) of a log cost
    linear in the raw context, ``offset + slope . (x - center)``; slope and center 0 where
    absent. InputError naming ``field.key`` when malformed."""
    offset = float(checked_array(cfg["offset"], (), f"{field}.offset", offset_lo, 2 * MAX_LOG))
    slope, center = np.zeros(d), np.zeros(d)
    if cfg.get("slope") is not None:
        slope = checked_array(cfg["slope"], (d,), f"{field}.slope", -MAX_LOG, MAX_LOG)
    if cfg.get("center") is not None:
        center = checked_array(cfg["center"], (d,), f"{field}.center", -1e6, 1e6)
    return offset, slope, center
