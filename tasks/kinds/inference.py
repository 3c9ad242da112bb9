"""Trial kind ``inference``: embed one batch of texts under an acceleration arm.

Spec: ``{"texts": [str, ...], "max_length": int}``. Arm: an :class:`app.accel.AccelArm` object.
Options (campaign-level, plus the scheduler's per-trial ``monitor`` flag): ``model`` (import
path of a bundle factory), ``quality_floor`` (mean cosine), ``repeats`` (timed runs, median).

Cost = warm latency in milliseconds. The first call of an arm on a new shape bucket in this
process (compilation, allocator warm-up) is timed separately as ``first_call_ms`` and never
enters the cost. When ``monitor`` is set the fp32 reference runs on the same batch and quality
is the cosine similarity of the embeddings (mean; minimum in metrics); if the arm misses the
floor on a monitored batch, the reference output is what the caller gets (``fallback``).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

from app.accel import AccelArm
from app.errors import InputError
from tasks.kinds.base import Outcome, TrialKind

if TYPE_CHECKING:  # torch and the model code load on workers only, when a trial runs
    import torch

    from tasks.kinds.inference_models import ModelBundle

#: The bundled model (all-MiniLM-L6-v2), as an import path of its bundle factory.
DEFAULT_MODEL = "tasks.kinds.inference_models:minilm"

MAX_TEXTS = 1024
MAX_TEXT_CHARS = 100_000
MAX_LENGTH = 512

#: Context features of an inference instance (see :func:`batch_context`).
FEATURES = (
    "batch_size",
    "seq_len_max",
    "seq_len_mean",
    "padding_ratio",
    "device_cuda",
    "device_capability",
    "threads",
    "shape_warm",
    "model_params_m",
    "model_layers",
    "model_hidden",
)


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


def token_lengths(bundle: ModelBundle, texts: list[str], max_length: int) -> list[int]:
    mask = bundle.tokenize(texts, max_length)["attention_mask"]
    return [int(v) for v in mask.sum(1).tolist()]


def device_features(device: dict[str, Any]) -> dict[str, float]:
    """The context features that describe the device a batch runs on."""
    return {
        "device_cuda": 1.0 if device.get("type") == "cuda" else 0.0,
        "device_capability": float(device.get("capability", 0.0)),
        "threads": float(device.get("threads", 1.0)),
    }


def batch_context(
    lengths: list[int],
    device: dict[str, Any],
    descriptors: dict[str, float],
    shape_warm: bool,
) -> dict[str, float]:
    """The context features of a batch whose texts tokenize to ``lengths`` tokens."""
    n, longest = len(lengths), max(lengths)
    return {
        "batch_size": float(n),
        "seq_len_max": float(longest),
        "seq_len_mean": sum(lengths) / n,
        "padding_ratio": 1.0 - sum(lengths) / (n * longest),
        **device_features(device),
        "shape_warm": 1.0 if shape_warm else 0.0,
        **{k: float(descriptors[k]) for k in ("model_params_m", "model_layers", "model_hidden")},
    }


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class InferenceKind(TrialKind):
    name = "inference"

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:
        for i, a in enumerate(arms):
            AccelArm.parse(a, f"arms[{i}]")

    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        texts = spec.get("texts")
        if not isinstance(texts, list) or not texts:
            raise InputError("texts", "must be a non-empty list of strings")
        if len(texts) > MAX_TEXTS:
            raise InputError("texts", f"at most {MAX_TEXTS} texts per batch, got {len(texts)}")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"texts[{i}]", f"must be a non-blank string, got {t!r:.40}")
            if len(t) > MAX_TEXT_CHARS:
                raise InputError(f"texts[{i}]", f"longer than {MAX_TEXT_CHARS} characters")
            if "\x00" in t:
                raise InputError(f"texts[{i}]", "contains a NUL character")
        max_length = spec.get("max_length", 256)
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, int)
            or not 2 <= max_length <= MAX_LENGTH
        ):
            raise InputError("max_length", f"must be an integer in 2..{MAX_LENGTH}")
        extra = sorted(set(spec) - {"texts", "max_length", "return_outputs"})
        if extra:
            raise InputError(
                extra[0], "unknown key; an inference spec takes texts, max_length, return_outputs"
            )
        out: dict[str, Any] = {"texts": list(texts), "max_length": max_length}
        want = spec.get("return_outputs", False)
        if not isinstance(want, bool):
            raise InputError("return_outputs", f"must be true or false, got {want!r}")
        if want:
            out["return_outputs"] = True
        return out

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        import torch

        from tasks.kinds.inference_models import load_bundle, mark_warm, shape_bucket, variant

        spec = self.validate_spec(spec)
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
        batch = {
            k: v.to(device) for k, v in bundle.tokenize(spec["texts"], spec["max_length"]).items()
        }
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
            cos = torch.nn.functional.cosine_similarity(emb, ref, dim=1)
            quality = float(cos.mean())
            metrics["cos_min"] = float(cos.min())
            floor = opts.get("quality_floor")
            metrics["fallback"] = bool(
                isinstance(floor, int | float) and math.isfinite(floor) and quality < floor
            )
            if metrics["fallback"]:
                emb = ref  # below the floor: the caller gets the reference output
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
