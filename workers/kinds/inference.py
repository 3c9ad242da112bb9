"""Worker side of the ``inference`` kind: pick the device, load the model variant of the arm,
time the batch, monitor quality against the fp32 reference. Imports torch; loaded on workers
only (the kind names :func:`run` as its ``runner``)."""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

from tasks.errors import InputError
from tasks.kinds.accel import AccelArm
from tasks.kinds.base import Outcome
from tasks.kinds.inference import DEFAULT_MODEL, InferenceKind

if TYPE_CHECKING:
    import torch


def pick_device() -> torch.device:
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def device_profile(device: torch.device | None = None) -> dict[str, float | str]:
    """Type, compute capability (0 on CPU) and thread count of a worker's device."""
    import torch

    dev = device or pick_device()
    cap = 0.0
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        cap = major + minor / 10.0
    return {"type": dev.type, "capability": cap, "threads": float(torch.get_num_threads())}


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: the quality of an output that is not a number (NaN or inf in the embeddings): the worst
#: cosine, so that it is a violation of any floor and the policy learns the arm's shortfall
NAN_QUALITY = -1.0


def judge(emb: Any, ref: Any, floor: Any) -> tuple[float, bool, dict[str, Any]]:
    """(quality, serve the reference instead, metrics) of an arm's output ``emb`` against
    the reference ``ref`` (torch tensors, batch x dim): quality is the mean cosine; an output
    holding NaN or inf has quality :data:`NAN_QUALITY` and is never served."""
    import torch

    cos = torch.nn.functional.cosine_similarity(emb, ref, dim=1)
    quality = float(cos.mean())
    finite = math.isfinite(quality) and bool(torch.isfinite(emb).all())
    if not finite:
        return NAN_QUALITY, True, {"cos_min": NAN_QUALITY, "quality_nan": True}
    below = isinstance(floor, int | float) and math.isfinite(floor) and quality < floor
    return quality, bool(below), {"cos_min": float(cos.min())}


def run(
    spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
) -> Outcome:
    """Embed the batch under the arm; cost = warm latency in ms (see tasks.kinds.inference)."""
    import torch

    from tasks.kinds.inference_models import load_bundle, shape_bucket
    from workers.kinds.inference_variants import mark_warm, variant

    spec = InferenceKind().validate_spec(spec)
    opts = options or {}
    accel = AccelArm.parse(arm)
    device = pick_device()
    why = accel.unsupported_reason(device.type)
    if why is not None:
        raise InputError("arm", f"{accel.name} cannot run on this worker: {why}")
    model_path = str(opts.get("model") or DEFAULT_MODEL)
    bundle = load_bundle(model_path)
    repeats = int(opts.get("repeats", 1))
    if not 1 <= repeats <= 50:
        raise InputError("options.repeats", "must be in 1..50")
    batch = {k: v.to(device) for k, v in bundle.tokenize(spec["texts"], spec["max_length"]).items()}
    bsz, seq = batch["attention_mask"].shape
    model = variant(model_path, bundle, accel, device)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accel.dtype)

    def forward(m: torch.nn.Module, cast: torch.dtype | None) -> torch.Tensor:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=cast or torch.bfloat16, enabled=cast is not None),
        ):
            out = bundle.embed(m, batch)
        _sync(device)
        return out.float()

    bucket = shape_bucket(int(bsz), int(seq))
    was_warm = mark_warm((model_path, accel, str(device), bucket))
    first_call_ms = None
    if not was_warm:
        t = time.perf_counter()
        forward(model, autocast_dtype)
        first_call_ms = (time.perf_counter() - t) * 1000.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        emb = forward(model, autocast_dtype)
        times.append((time.perf_counter() - t) * 1000.0)
    latency = statistics.median(times)
    metrics: dict[str, Any] = {
        "arm": accel.name,
        "batch_size": int(bsz),
        "seq_len": int(seq),
        "tokens": int(batch["attention_mask"].sum()),
        "throughput_per_s": bsz / (latency / 1000.0) if latency > 0 else None,
        "first_call_ms": first_call_ms,
        "warm_before": was_warm,
        "threads": torch.get_num_threads(),
        "model": bundle.name,
    }
    if device.type == "cuda":
        metrics["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    quality = None
    if opts.get("monitor"):
        ref_model = variant(model_path, bundle, AccelArm(), device)
        if not mark_warm((model_path, AccelArm(), str(device), bucket)):
            forward(ref_model, None)
        t = time.perf_counter()
        ref = emb if accel.is_reference else forward(ref_model, None)
        metrics["reference_ms"] = (time.perf_counter() - t) * 1000.0
        quality, fallback, extra = judge(emb, ref, opts.get("quality_floor"))
        metrics.update(extra, fallback=fallback)
        if fallback:
            emb = ref  # below the floor (or not a number): the caller gets the reference
    outputs = None
    if spec.get("return_outputs"):
        from tasks.arrays import encode_array

        outputs = {"embeddings": encode_array(emb.detach().cpu().numpy())}
    return Outcome(
        cost=latency,
        latency_ms=latency,
        quality=quality,
        device=device.type,
        metrics=metrics,
        outputs=outputs,
    )
