"""Real PostgreSQL and RabbitMQ: an inference campaign on the bundled MiniLM runs through the
scheduler and two worker processes; results land in trial_results with latency and quality."""

from __future__ import annotations

from sqlalchemy import text

from app.client import Client
from app.config import Settings
from app.dev.local import LocalCluster
from tasks.kinds.accel import AccelArm


def test_inference_campaign_through_scheduler_and_workers(pg_settings: Settings) -> None:
    client = Client(settings=pg_settings)
    camp = client.create_inference_campaign(
        "accel-e2e",
        arms=[
            AccelArm().to_json(),
            AccelArm(dtype="bf16").to_json(),
            AccelArm(skip_speedup=2.0).to_json(),
            AccelArm(dtype="fp16").to_json(),  # CUDA only: never chosen for these CPU workers
        ],
        quality_floor=0.99,
        monitor_fraction=0.25,
        device="auto",  # the workers announce their device class; trials go to its queue
        max_in_flight=2,
    )
    texts = [
        f"request {i}: the solver converged after {i * 7} sweeps on grid {i}" for i in range(32)
    ]
    batches = [texts[: 1 + (i * 5) % 32] for i in range(24)]
    with LocalCluster(pg_settings, workers=2) as cluster:
        camp.submit_texts(batches, max_length=64)
        try:
            camp.wait(timeout=300)
            served = camp.embed(texts[:3], max_length=64, timeout=120)
        except TimeoutError:
            cluster.check()
            raise
    assert served.shape == (3, 384) and str(served.dtype) == "float32"
    with client.engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT arm_name, status, latency_ms, quality, reason, device FROM trial_results "
                "WHERE campaign = 'accel-e2e'"
            )
        ).all()
        updates = c.execute(
            text("SELECT n_updates FROM campaigns WHERE name = 'accel-e2e'")
        ).scalar()
        classes = (
            c.execute(
                text(
                    "SELECT DISTINCT device_class FROM trials t JOIN campaigns c ON c.id = "
                    "t.campaign_id WHERE c.name = 'accel-e2e'"
                )
            )
            .scalars()
            .all()
        )
    assert len(rows) == 25 and all(r.status == "succeeded" for r in rows)
    assert updates == 25
    assert list(classes) == ["cpu"] and not any(r.arm_name == "fp16" for r in rows)
    assert all(r.latency_ms > 0 and r.device == "cpu" for r in rows)
    monitored = [r for r in rows if r.quality is not None]
    assert monitored and all(0.0 < r.quality <= 1.0 + 1e-6 for r in monitored)
    # the lossy arm is only ever run as a monitored probe (its output is never served blind)
    assert all(r.quality is not None for r in rows if r.arm_name == "fp32+skip2")


def test_inference_campaign_on_the_embedded_default_with_worker_processes(
    embedded_settings: Settings,
) -> None:
    client = Client(settings=embedded_settings)
    camp = client.create_inference_campaign(
        "accel-embedded",
        arms=[AccelArm().to_json(), AccelArm(dtype="bf16").to_json()],
        monitor_fraction=0.5,
        device="cpu",
    )
    with LocalCluster(embedded_settings, workers=1) as cluster:
        camp.submit_texts([["short text"], ["a longer text about heat flow", "and more"]] * 3)
        try:
            camp.wait(timeout=240)
        except TimeoutError:
            cluster.check()
            raise
    rows = camp.results()
    assert len(rows) == 6 and all(r["status"] == "succeeded" for r in rows)
    assert all(r["latency_ms"] > 0 for r in rows)
    assert any(r["quality"] is not None for r in rows)
