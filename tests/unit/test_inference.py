"""The inference kind on the bundled MiniLM and a user's own model, and an inference campaign
through the real scheduler on the embedded default (trials executed inline)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.client import Client
from app.config import Settings
from models import Arm, Campaign, Instance
from tasks.errors import InputError
from tasks.kinds.accel import AccelArm
from tasks.kinds.inference import InferenceKind
from tasks.kinds.inference_models import DEFAULT_MODEL, load_bundle
from tests.inline import InlineScheduler, serving
from workers.kinds.inference_variants import variant

TEXTS = [f"sentence number {i} about heat flow in a sparse grid " * (1 + i % 3) for i in range(6)]
TINY = "tests.tiny_bundle:factory"


def test_reference_run_reports_warm_latency_quality_and_first_call() -> None:
    kind = InferenceKind()
    spec = {"texts": TEXTS, "max_length": 32}
    first = kind.run(spec, AccelArm().to_json(), {"monitor": True, "quality_floor": 0.99})
    again = kind.run(spec, AccelArm().to_json(), {})
    assert first.quality == pytest.approx(1.0, abs=1e-6)
    assert first.metrics["cos_min"] == pytest.approx(1.0, abs=1e-6)
    assert first.metrics["fallback"] is False
    assert first.cost == first.latency_ms and first.cost > 0
    assert again.quality is None and again.metrics["warm_before"] is True
    assert again.metrics["first_call_ms"] is None
    assert first.metrics["batch_size"] == 6 and first.metrics["seq_len"] <= 32
    assert first.metrics["throughput_per_s"] > 0


def test_lossy_arms_measure_lower_quality_and_fall_back_below_the_floor() -> None:
    kind = InferenceKind()
    spec = {"texts": TEXTS, "max_length": 32}
    bf16 = kind.run(spec, AccelArm(dtype="bf16").to_json(), {"monitor": True})
    skip = kind.run(
        spec, AccelArm(skip_speedup=2.0).to_json(), {"monitor": True, "quality_floor": 0.99}
    )
    assert bf16.quality is not None and bf16.quality > 0.999
    assert skip.quality is not None and skip.quality < 0.99
    assert skip.metrics["fallback"] is True  # the caller gets the reference output


def test_layer_skipping_leaves_the_shared_model_whole() -> None:
    bundle = load_bundle(DEFAULT_MODEL)
    import torch

    cpu = torch.device("cpu")
    skipped = variant(DEFAULT_MODEL, bundle, AccelArm(skip_speedup=2.0), cpu)
    full = variant(DEFAULT_MODEL, bundle, AccelArm(), cpu)
    assert len(bundle.layers(skipped)) == 3
    assert len(bundle.layers(full)) == 6
    assert bundle.descriptors()["model_layers"] == 6.0


def test_an_arm_the_device_cannot_run_fails_clearly() -> None:
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        InferenceKind().run({"texts": ["a b"]}, AccelArm(dtype="fp16").to_json(), {})


def test_a_users_own_model_plugs_in_by_import_path() -> None:
    kind = InferenceKind()
    out = kind.run(
        {"texts": TEXTS}, AccelArm(skip_speedup=2.0).to_json(), {"model": TINY, "monitor": True}
    )
    assert out.metrics["model"] == "tiny"
    assert out.quality is not None and 0 < out.quality < 1.0
    with pytest.raises(InputError, match="not a ModelBundle"):
        kind.run({"texts": TEXTS}, {}, {"model": "tests.tiny_bundle:not_a_bundle"})


def _arms() -> list[dict[str, Any]]:
    return [
        AccelArm().to_json(),
        AccelArm(dtype="bf16").to_json(),
        AccelArm(skip_speedup=2.0).to_json(),
        AccelArm(dtype="fp16").to_json(),  # CUDA only: dropped on a CPU campaign
    ]


def test_inference_campaign_end_to_end_on_the_embedded_default(
    embedded_settings: Settings,
) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign(
        "embed", arms=_arms(), quality_floor=0.99, monitor_fraction=0.3, device="cpu"
    )
    batches = [TEXTS[: 1 + i % 6] for i in range(16)]
    camp.submit_texts(batches, max_length=48)
    sched = InlineScheduler(embedded_settings)
    sched.run_until_idle()
    published: list[dict[str, Any]] = sched.fake.sent
    with client.engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT arm_name, status AS state, latency_ms, quality, reason FROM trial_results "
                "WHERE campaign = 'embed' ORDER BY trial_id"
            )
        ).all()
        arm_names = c.execute(text('SELECT name FROM arms ORDER BY "index"')).scalars().all()
        settings = c.execute(text("SELECT settings FROM campaigns")).scalar()
    assert list(arm_names) == ["fp32", "bf16", "fp32+skip2"]  # fp16 dropped on the CPU
    assert "fp16" in (settings if isinstance(settings, str) else str(settings))
    assert len(rows) == 16 and all(r.state == "succeeded" for r in rows)
    assert all(r.latency_ms is not None and r.latency_ms > 0 for r in rows)
    assert any(r.quality is not None for r in rows)
    # every probe ran the reference: its quality is known, and the lossy arm was only probed
    for r in rows:
        if r.reason == "quality-probe":
            assert r.quality is not None
        if r.arm_name == "fp32+skip2" and r.quality is None:
            raise AssertionError("the lossy arm was served without monitoring")
    probes = [p for p in published if p["options"]["monitor"]]
    assert probes and all(p["options"]["model"] == DEFAULT_MODEL for p in published)
    below = sum(1 for r in rows if r.quality is not None and r.quality < 0.99)
    assert sched.metrics.counters.get("quality_violations", 0) == below


def test_inference_campaign_with_a_users_model(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign("tiny", model=TINY, arms=_arms()[:2], device="cpu")
    camp.submit_texts([["abc", "de"], ["x y z"]])
    InlineScheduler(embedded_settings).run_until_idle()
    assert camp.counts() == {"done": 2}


CREATE_BAD = [
    ("floor above one", {"quality_floor": 1.5}, "settings.quality_floor"),
    ("floor one", {"quality_floor": 1.0}, "settings.quality_floor"),
    ("floor text", {"quality_floor": "high"}, "settings.quality_floor"),
    ("negative monitor fraction", {"monitor_fraction": -0.1}, "settings.monitor_fraction"),
    ("unknown device", {"device": "tpu"}, "settings.device"),
    ("unknown model", {"model": "no.such.module:factory"}, "settings.model"),
    ("model not a path", {"model": "minilm"}, "settings.model"),
    ("model not a bundle", {"model": "tests.tiny_bundle:not_a_bundle"}, "settings.model"),
    ("no reference arm", {"arms": [AccelArm(dtype="bf16").to_json()]}, "arms"),
    ("unknown arm key", {"arms": [{"dtype": "fp32", "turbo": True}]}, "arms[0].turbo"),
    ("only cuda arms on cpu", {"arms": [AccelArm(dtype="fp16").to_json()]}, "arms"),
    ("unknown feature", {"context_features": ["gpu_temp"]}, "context_features[0]"),
    ("unknown setting", {"settings": {"warp": 9}}, "settings.warp"),
]


def _count(client: Client) -> tuple[int, int, int]:
    with client.Session() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) or 0 for t in (Campaign, Arm, Instance)
        )


@pytest.mark.parametrize(("label", "over", "field"), CREATE_BAD, ids=[c[0] for c in CREATE_BAD])
def test_bad_inference_campaigns_are_refused(
    embedded_settings: Settings, label: str, over: dict[str, Any], field: str
) -> None:
    client = Client(settings=embedded_settings)
    other = client.create_inference_campaign("other", arms=_arms()[:2], device="cpu")
    other.submit_texts([["fine"]])
    before = _count(client)
    kw: dict[str, Any] = {"arms": _arms()[:2], "device": "cpu", **over}
    with pytest.raises(InputError) as info:
        client.create_inference_campaign("bad", **kw)
    assert info.value.field == field, (label, str(info.value))
    assert _count(client) == before
    assert other.counts() == {"pending": 1}


SUBMIT_BAD = [
    ("empty batch", [[]], "batches[0]"),
    ("text not a string", [["ok", 3]], "batches[0]"),
    ("blank text", [["ok", "   "]], "batches[0]"),
    ("batch is a string", ["just text"], "batches[0]"),
    ("second batch bad", [["ok"], [None]], "batches[1]"),
    ("nul in text", [["a\x00b"]], "batches[0].texts[0]"),
]


@pytest.mark.parametrize(("label", "batches", "field"), SUBMIT_BAD, ids=[c[0] for c in SUBMIT_BAD])
def test_bad_inference_batches_are_refused(
    embedded_settings: Settings, label: str, batches: Any, field: str
) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign("c", arms=_arms()[:2], device="cpu")
    camp.submit_texts([["fine"]])
    before = _count(client)
    with pytest.raises(InputError) as info:
        camp.submit_texts(batches)
    assert info.value.field == field, (label, str(info.value))
    assert _count(client) == before


def test_max_length_out_of_range_is_refused(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign("c", arms=_arms()[:2], device="cpu")
    with pytest.raises(InputError) as info:
        camp.submit_texts([["fine"]], max_length=1)
    assert info.value.field == "batches[0].max_length"


def test_warm_start_from_an_earlier_inference_campaign(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    arms = _arms()[:3]
    first = client.create_inference_campaign(
        "history", arms=arms, device="cpu", monitor_fraction=1.0
    )
    first.submit_texts([TEXTS[: 1 + i % 6] for i in range(8)], max_length=32)
    InlineScheduler(embedded_settings).run_until_idle()
    second = client.create_inference_campaign(
        "next", arms=arms, device="cpu", warm_start_from=["history"]
    )
    with client.Session() as s:
        row = s.scalar(select(Campaign).where(Campaign.name == "next"))
        assert row is not None
        from app.scheduler.runtime import load_runtime

        policy = load_runtime(s, row.id).policy
    assert policy.n_updates == 8  # every earlier result, costs and monitored quality
    assert float(policy.nq.sum()) == 8  # type: ignore[attr-defined]
    assert second.counts() == {}


def _fp32_reference(texts: list[str], max_length: int) -> Any:
    import torch

    bundle = load_bundle(DEFAULT_MODEL)
    model = variant(DEFAULT_MODEL, bundle, AccelArm(), torch.device("cpu"))
    with torch.inference_mode():
        return bundle.embed(model, bundle.tokenize(texts, max_length)).float().numpy()


def _cosines(a: Any, b: Any) -> Any:
    import numpy as np

    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_outputs_equal_a_plain_fp32_run_within_the_floor(embedded_settings: Settings) -> None:
    """Every batch's served embeddings match an fp32 run of the same model within the floor;
    a quality probe that missed the floor served the reference output itself. (Arms drawn
    at random and every batch probed: the default policy's choices follow measured
    latencies, and on a loaded machine it could leave the lossy arm unprobed.)"""
    import numpy as np

    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign(
        "serve",
        arms=_arms(),
        quality_floor=0.99,
        monitor_fraction=1.0,
        device="cpu",
        policy="random",
    )
    batches = [TEXTS[: 1 + i % 6] for i in range(12)]
    ids = camp.submit_texts(batches, max_length=48, return_outputs=True)
    plain = camp.submit_texts([TEXTS[:2]], max_length=48)  # outputs not asked for
    InlineScheduler(embedded_settings).run_until_idle()
    with client.engine.connect() as c:
        fallbacks = {
            int(r.instance_id)
            for r in c.execute(
                text(
                    "SELECT t.instance_id FROM trials t JOIN results r ON r.trial_id = t.id "
                    "WHERE r.quality < 0.99"
                )
            )
        }
    for iid, texts in zip(ids, batches, strict=True):
        out = camp.outputs(iid)
        assert out is not None and out.dtype == np.float32
        assert out.shape == (len(texts), 384)
        cos = _cosines(out, _fp32_reference(texts, 48))
        assert cos.mean() >= 0.99, (iid, cos)
        if iid in fallbacks:  # the probe missed the floor: the reference itself was served
            assert cos.min() > 1 - 1e-5
    assert fallbacks, "no probe of the lossy arm missed the floor: the fallback is untested"
    assert camp.outputs(plain[0]) is None
    with client.engine.connect() as c:
        stored = c.execute(text("SELECT outputs FROM results WHERE outputs IS NOT NULL")).first()
    assert stored is not None and "b64" in str(stored[0])  # binary, not a list of numbers


def test_embed_blocks_and_returns_the_batchs_embeddings(embedded_settings: Settings) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign(
        "embed-call", arms=_arms(), quality_floor=0.99, device="cpu"
    )
    with serving(embedded_settings):
        out = camp.embed(TEXTS[:3], max_length=32, timeout=120)
    assert out.shape == (3, 384)
    assert _cosines(out, _fp32_reference(TEXTS[:3], 32)).mean() >= 0.99
    with pytest.raises(InputError, match="return_outputs"):
        camp.submit_texts([TEXTS[:1]], return_outputs="yes")  # type: ignore[arg-type]


def test_an_output_that_is_not_a_number_is_a_violation_and_never_served() -> None:
    """fp16 overflow gives NaN embeddings: before, the NaN quality was dropped on the wire
    (no violation counted, nothing learnt) and the NaN output served."""
    import torch

    from workers.kinds.inference import NAN_QUALITY, judge

    ref = torch.ones(3, 4)
    bad = ref.clone()
    bad[1, 2] = float("nan")
    quality, fallback, metrics = judge(bad, ref, 0.99)
    assert quality == NAN_QUALITY and fallback and metrics["quality_nan"]
    quality, fallback, _ = judge(bad, ref, None)  # no floor: still never served
    assert quality == NAN_QUALITY and fallback
    inf = ref.clone()
    inf[0, 0] = float("inf")
    assert judge(inf, ref, None)[1]
    quality, fallback, metrics = judge(ref * 2.0, ref, 0.99)
    assert quality == pytest.approx(1.0) and not fallback and "quality_nan" not in metrics
