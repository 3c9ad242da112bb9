"""The accelerated variants of an inference model a worker runs: one module per (model, arm,
device), built once per process, and which (arm, shape bucket) pairs have run warm. Thread-safe
(one lock); torch is imported here, on workers only."""

from __future__ import annotations

import threading
import warnings

import torch
from torch import nn

from tasks.kinds.accel import AccelArm
from tasks.kinds.inference_models import ModelBundle

_lock = threading.Lock()
_variants: dict[tuple[str, AccelArm, str], nn.Module] = {}
_warm: set[tuple[str, AccelArm, str, tuple[int, int]]] = set()


def variant(model_path: str, bundle: ModelBundle, arm: AccelArm, device: torch.device) -> nn.Module:
    """The module that runs ``arm`` on ``device`` (built once per process; autocast is applied
    at call time, so bf16/fp16 arms share the fp32 weights' layout)."""
    key = (model_path, arm, str(device))
    with _lock:
        if key in _variants:
            return _variants[key]
    model = bundle.build(arm.attention)
    if arm.skip_speedup > 1.0:
        model = bundle.with_layers(model, arm.kept_layers(len(bundle.layers(model))))
    if arm.quantize == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice, once per variant
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    model = model.to(device)
    if arm.compile != "none":
        # dynamic=True: one graph serves every batch shape instead of one per shape.
        model = torch.compile(model, mode=arm.compile, dynamic=True)  # type: ignore[assignment]
    with _lock:
        return _variants.setdefault(key, model)


def mark_warm(key: tuple[str, AccelArm, str, tuple[int, int]]) -> bool:
    """Record a warm (arm, bucket); return whether it already was."""
    with _lock:
        seen = key in _warm
        _warm.add(key)
        return seen
