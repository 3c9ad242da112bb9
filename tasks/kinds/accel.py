"""Acceleration arms for the ``inference`` trial kind: one composable, validated config each.

An arm is a JSON object; every key is optional and defaults to the fp32 baseline::

    {"dtype": "fp32" | "bf16" | "fp16",            # autocast precision (fp16: CUDA only)
     "compile": "none" | "default" | "reduce-overhead",  # torch.compile mode (r-o: CUDA only)
     "quantize": "none" | "int8",                  # dynamic int8 of nn.Linear (CPU only)
     "attention": "sdpa" | "eager",                # transformers attention implementation
     "skip_speedup": 1.0}                          # layer skipping for this target speed-up

Layer skipping follows "Accelerating Inference in LLMs with a Unified Layer Skipping Strategy"
(Liu et al., 2024): for a target speed-up ``s`` keep ``round(L / s)`` of the ``L`` layers, spread
evenly over the depth (first and last always kept), independent of the input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tasks.errors import InputError

DTYPES = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("none", "default", "reduce-overhead")
QUANTIZE = ("none", "int8")
ATTENTION = ("sdpa", "eager")
MAX_SKIP_SPEEDUP = 4.0


@dataclass(frozen=True)
class AccelArm:
    """One acceleration configuration (immutable, hashable: it keys per-process caches)."""

    dtype: str = "fp32"
    compile: str = "none"
    quantize: str = "none"
    attention: str = "sdpa"
    skip_speedup: float = 1.0

    @classmethod
    def parse(cls, value: Any, field: str = "arm") -> AccelArm:
        """Validate an arm object; errors name ``field.key`` and list what is allowed."""
        if not isinstance(value, dict):
            raise InputError(field, f"must be an object, got {type(value).__name__}")
        allowed = {f for f in cls.__dataclass_fields__}
        extra = sorted(str(k) for k in value if k not in allowed)
        if extra:
            raise InputError(f"{field}.{extra[0]}", f"unknown key; allowed: {sorted(allowed)}")
        out: dict[str, Any] = {}
        for key, choices in (
            ("dtype", DTYPES),
            ("compile", COMPILE_MODES),
            ("quantize", QUANTIZE),
            ("attention", ATTENTION),
        ):
            v = value.get(key, getattr(cls, key))
            if v not in choices:
                raise InputError(f"{field}.{key}", f"must be one of {list(choices)}, got {v!r}")
            out[key] = v
        s = value.get("skip_speedup", 1.0)
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s):
            raise InputError(f"{field}.skip_speedup", f"must be a number, got {s!r}")
        if not 1.0 <= float(s) <= MAX_SKIP_SPEEDUP:
            raise InputError(
                f"{field}.skip_speedup", f"must be in [1, {MAX_SKIP_SPEEDUP}], got {s}"
            )
        out["skip_speedup"] = float(s)
        arm = cls(**out)
        if arm.quantize == "int8" and (arm.dtype != "fp32" or arm.compile != "none"):
            raise InputError(
                f"{field}.quantize",
                "int8 dynamic quantization runs alone (dtype fp32, compile none)",
            )
        return arm

    @property
    def name(self) -> str:
        """Short label: ``fp32``, ``bf16+compile``, ``int8``, ``fp32+skip1.5`` ..."""
        parts = ["int8" if self.quantize == "int8" else self.dtype]
        if self.compile != "none":
            parts.append("compile" if self.compile == "default" else "compile-ro")
        if self.attention != "sdpa":
            parts.append(self.attention)
        if self.skip_speedup > 1.0:
            parts.append(f"skip{self.skip_speedup:g}")
        return "+".join(parts)

    @property
    def is_reference(self) -> bool:
        """The fp32, un-accelerated configuration that defines quality 1.0."""
        return self == AccelArm()

    def unsupported_reason(self, device_type: str) -> str | None:
        """Why this arm cannot run on ``device_type`` ('cpu' or 'cuda'); None when it can."""
        if device_type != "cuda" and self.dtype == "fp16":
            return "fp16 needs a CUDA device"
        if device_type != "cuda" and self.compile == "reduce-overhead":
            return "compile mode reduce-overhead (CUDA graphs) needs a CUDA device"
        if device_type != "cpu" and self.quantize == "int8":
            return "dynamic int8 quantization runs on the CPU only"
        return None

    def kept_layers(self, n_layers: int) -> list[int]:
        """Indices of the layers kept for ``skip_speedup`` (evenly spread, ends kept)."""
        keep = max(1, min(n_layers, round(n_layers / self.skip_speedup)))
        if keep >= n_layers:
            return list(range(n_layers))
        if keep == 1:
            return [0]
        step = (n_layers - 1) / (keep - 1)
        return sorted({round(i * step) for i in range(keep)})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: The arm set a campaign gets when it names none; unsupported ones are dropped per device.
STANDARD_ARMS: tuple[AccelArm, ...] = (
    AccelArm(),
    AccelArm(attention="eager"),
    AccelArm(dtype="bf16"),
    AccelArm(dtype="fp16"),
    AccelArm(compile="default"),
    AccelArm(dtype="bf16", compile="default"),
    AccelArm(compile="reduce-overhead"),
    AccelArm(quantize="int8"),
    AccelArm(skip_speedup=1.2),
    AccelArm(dtype="bf16", skip_speedup=1.5),
)


def arms_for_device(
    arms: list[dict[str, Any]], device_type: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Split into (runnable arm dicts in canonical form, {arm name: why it was dropped})."""
    keep: list[dict[str, Any]] = []
    dropped: dict[str, str] = {}
    for i, a in enumerate(arms):
        arm = AccelArm.parse(a, f"arms[{i}]")
        why = arm.unsupported_reason(device_type)
        if why is None:
            keep.append(arm.to_json())
        else:
            dropped[arm.name] = why
    return keep, dropped
