"""Trial kind ``inference``: embed one batch of texts under an acceleration arm.

Spec: ``{"texts": [str, ...], "max_length": int}``. Arm: an
:class:`tasks.kinds.accel.AccelArm` object.
Options (campaign-level, plus the scheduler's per-trial ``monitor`` flag): ``model`` (import
path of a bundle factory), ``quality_floor`` (mean cosine), ``repeats`` (timed runs, median).

Cost = warm latency in milliseconds. The first call of an arm on a new shape bucket in this
process (compilation, allocator warm-up) is timed separately as ``first_call_ms`` and never
enters the cost. When ``monitor`` is set the fp32 reference runs on the same batch and quality
is the cosine similarity of the embeddings (mean; minimum in metrics); if the arm misses the
floor on a monitored batch, the reference output is what the caller gets (``fallback``).
The run is worker code: :mod:`workers.kinds.inference`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.errors import InputError
from tasks.kinds.accel import AccelArm
from tasks.kinds.base import KindExample, TrialKind

if TYPE_CHECKING:  # the model code loads where a batch is tokenized or run
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


class InferenceKind(TrialKind):
    name = "inference"

    def example(self) -> KindExample:
        from tasks.kinds.accel import AccelArm

        return KindExample(
            [AccelArm().to_json(), AccelArm(dtype="bf16").to_json()],
            {"texts": ["a short sentence", "another one"], "max_length": 16},
            {"device": {"type": "cpu"}},
        )

    #: the quality floor is a constraint only constrained-ts learns
    default_policy = "constrained-ts"
    runner = "workers.kinds.inference:run"

    def decision_options(
        self, options: dict[str, Any] | None, monitored: bool
    ) -> dict[str, Any] | None:
        """The campaign's options plus ``monitor``: run the fp32 reference on this batch."""
        return {**(options or {}), "monitor": monitored}

    def prepare_campaign(
        self,
        arms: list[dict[str, Any]],
        settings: dict[str, Any],
        policy: str,
        policy_config: dict[str, Any],
        features: list[str],
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], list[str]]:
        from tasks.kinds.inference_campaign import prepare_campaign

        return prepare_campaign(arms, settings, policy, policy_config, features)

    def arm_label(self, arm: dict[str, Any]) -> str:
        return AccelArm.parse(arm).name

    def arm_unsupported(self, arm: dict[str, Any], device_type: str) -> str | None:
        return AccelArm.parse(arm).unsupported_reason(device_type)

    def device_features(self, profile: dict[str, Any]) -> dict[str, float]:
        return device_features(profile)

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
