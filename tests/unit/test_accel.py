"""Acceleration arms and the constrained policy: parsing, device rules, learnt constraint."""

from __future__ import annotations

import numpy as np
import pytest

from app.policies.constrained_ts import PROBE, ConstrainedTSPolicy
from app.policies.guard import ConservativeGuard
from app.policies.registry import make_policy, resolve_name
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.kinds.accel import STANDARD_ARMS, AccelArm, arms_for_device


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"dtype": "fp8"}, "arm.dtype"),
        ({"compile": "max"}, "arm.compile"),
        ({"quantize": "int4"}, "arm.quantize"),
        ({"attention": "flash9"}, "arm.attention"),
        ({"skip_speedup": 0.5}, "arm.skip_speedup"),
        ({"skip_speedup": "2x"}, "arm.skip_speedup"),
        ({"skip_speedup": float("inf")}, "arm.skip_speedup"),
        ({"layers": 3}, "arm.layers"),
        ({"quantize": "int8", "dtype": "bf16"}, "arm.quantize"),
        ([1, 2], "arm"),
    ],
)
def test_bad_arms_name_the_field(value: object, field: str) -> None:
    with pytest.raises(InputError) as info:
        AccelArm.parse(value)
    assert info.value.field == field


def test_defaults_names_and_round_trip() -> None:
    assert AccelArm.parse({}) == AccelArm()
    assert AccelArm().is_reference and AccelArm().name == "fp32"
    arm = AccelArm(dtype="bf16", compile="default", skip_speedup=1.5)
    assert arm.name == "bf16+compile+skip1.5"
    assert AccelArm.parse(arm.to_json()) == arm
    assert len({a.name for a in STANDARD_ARMS}) == len(STANDARD_ARMS)


def test_layer_skipping_spreads_kept_layers_evenly_and_keeps_the_ends() -> None:
    assert AccelArm().kept_layers(6) == [0, 1, 2, 3, 4, 5]
    assert AccelArm(skip_speedup=2.0).kept_layers(6) == [0, 2, 5]  # 3 of 6 layers
    assert AccelArm(skip_speedup=1.5).kept_layers(6) == [0, 2, 3, 5]
    assert AccelArm(skip_speedup=2.0).kept_layers(24) == [round(i * 23 / 11) for i in range(12)]
    assert AccelArm(skip_speedup=4.0).kept_layers(2) == [0]


def test_device_rules_drop_arms_a_device_cannot_run() -> None:
    arms = [a.to_json() for a in STANDARD_ARMS]
    cpu, cpu_dropped = arms_for_device(arms, "cpu")
    cuda, cuda_dropped = arms_for_device(arms, "cuda")
    assert set(cpu_dropped) == {"fp16", "fp32+compile-ro"}
    assert set(cuda_dropped) == {"int8"}
    assert len(cpu) + len(cpu_dropped) == len(arms) == len(cuda) + len(cuda_dropped)
    assert AccelArm(dtype="fp16").unsupported_reason("cpu") == "fp16 needs a CUDA device"


def test_default_policy_for_inference_is_constrained() -> None:
    assert resolve_name("default", get_kind("inference").default_policy) == "constrained-ts"
    assert resolve_name("default", get_kind("sor").default_policy) == "smooth-ts"
    with pytest.raises(ValueError, match="quality_floor"):
        make_policy("constrained-ts", 3, 2, config={"quality_floor": 1.5})


def _world(t: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 arms: 0 reference; 1 fast but lossy (quality 0.9); 2 exact, faster on big batches
    and slower on small ones (a fixed overhead, like a compiled graph's launch)."""
    size = float(rng.integers(1, 64))
    x = np.array([size, 100.0])
    base = 2.0 * size
    cost = np.array([base, 0.4 * base, base * (0.5 + 4.0 / size)])  # arm 2 pays a fixed cost
    cost *= np.exp(0.1 * rng.standard_normal(3))  # timing noise
    quality = np.array([1.0, 0.9, 0.99995])
    return x, cost, quality


def test_constrained_policy_learns_the_floor_with_probes_and_no_served_violation() -> None:
    pol = ConstrainedTSPolicy(3, 2, quality_floor=0.99, reference_arm=0, seed=3)
    rng = np.random.default_rng(0)
    served_bad = probes = 0
    picks = []
    for t in range(300):
        x, cost, quality = _world(t, rng)
        d = pol.choose(x, key=t)
        probe = d.reason == PROBE
        probes += probe
        served_bad += int(quality[d.arm] < 0.99 and not probe)
        pol.update(x, d.arm, float(cost[d.arm]), float(quality[d.arm]) if probe else None)
        picks.append((x[0], d.arm))
    assert served_bad == 0  # uncertain arms are only tried as monitored probes
    assert 2 <= probes <= 10
    status = pol.feasibility(np.array([30.0, 100.0]))
    assert list(status) == [1, -1, 1]
    late = picks[150:]
    big = [a for s, a in late if s > 16]
    small = [a for s, a in late if s < 4]
    assert np.mean(np.array(big) == 2) > 0.8  # the exact fast arm where it is fast
    assert small and np.mean(np.array(small) == 0) > 0.6  # the reference where arm 2 is slow


def test_constrained_state_round_trips_and_replays_identically() -> None:
    rng = np.random.default_rng(1)
    live = ConstrainedTSPolicy(3, 2, quality_floor=0.99, seed=5)
    log = []
    for t in range(60):
        x, cost, quality = _world(t, rng)
        d = live.choose(x, key=t)
        q = float(quality[d.arm]) if d.reason == PROBE or t % 7 == 0 else None
        live.update(x, d.arm, float(cost[d.arm]), q)
        log.append((x, d.arm, float(cost[d.arm]), q))
    restored = ConstrainedTSPolicy(3, 2, quality_floor=0.99, seed=5)
    restored.set_state(live.get_state())
    replayed = ConstrainedTSPolicy(3, 2, quality_floor=0.99, seed=5)
    for x, a, c, q in log:
        replayed.update(x, a, c, q)
    probe_x = np.array([20.0, 100.0])
    for other in (restored, replayed):
        assert other.choose(probe_x, 999) == live.choose(probe_x, 999)
        np.testing.assert_allclose(other.P, live.P)
        np.testing.assert_allclose(other.bq, live.bq)
    p = live.probabilities(probe_x, 3)
    assert p.shape == (3,) and abs(p.sum() - 1.0) < 1e-9


def test_guard_passes_quality_to_the_inner_policy() -> None:
    inner = ConstrainedTSPolicy(2, 1, quality_floor=0.9)
    guard = ConservativeGuard(inner, 0, 0.5)
    guard.update(np.array([1.0]), 1, 5.0, 0.5)
    assert inner.nq[1] == 1
