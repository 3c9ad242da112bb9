"""The acceleration workload and its per-batch oracle table (every arm run on every batch).

A workload is a list of text batches with batch sizes log-uniform in 1..64 and longest lengths
log-uniform in 8..256 tokens (texts in a batch vary in length, so padding varies). Measuring a
table runs each CPU-capable arm of :data:`tasks.kinds.accel.STANDARD_ARMS` on each batch through the
real ``inference`` trial kind (warm latency, median of ``repeats`` runs, quality monitored on
every batch), interleaving arms per batch so machine drift hits them alike. Tables are cached
as JSON: measuring is the slow part, replaying policies over a table is cheap.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "be",
    "are",
    "it",
    "an",
    "or",
    "have",
    "has",
    "model",
    "data",
    "system",
    "energy",
    "water",
    "light",
    "cell",
    "time",
    "protein",
    "field",
    "heat",
    "flow",
    "pressure",
    "signal",
    "network",
    "matrix",
    "solver",
    "sparse",
    "linear",
    "iteration",
    "error",
    "rate",
    "result",
    "method",
    "analysis",
    "sample",
    "measure",
    "value",
    "large",
    "small",
    "high",
    "low",
    "fast",
    "slow",
    "new",
    "early",
    "late",
    "first",
    "second",
    "final",
    "average",
    "study",
    "shows",
    "we",
    "find",
    "these",
    "results",
    "suggest",
    "strong",
    "weak",
    "effect",
    "cause",
    "increase",
    "decrease",
    "temperature",
    "density",
    "velocity",
    "gradient",
    "boundary",
    "condition",
    "equation",
    "grid",
    "mesh",
    "element",
]


@dataclass
class AccelTable:
    """Latency (ms) and quality (mean cosine vs fp32) of every arm on every batch."""

    arms: list[dict[str, Any]]
    names: list[str]
    contexts: list[dict[str, float]]
    latency: np.ndarray  # T x K
    quality: np.ndarray  # T x K
    first_call_ms: np.ndarray  # T x K (NaN when the shape was already warm)
    threads: int

    @property
    def T(self) -> int:
        return int(self.latency.shape[0])

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "arms": self.arms,
                    "names": self.names,
                    "contexts": self.contexts,
                    "latency": self.latency.tolist(),
                    "quality": self.quality.tolist(),
                    "first_call_ms": np.where(
                        np.isnan(self.first_call_ms), -1.0, self.first_call_ms
                    ).tolist(),
                    "threads": self.threads,
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> AccelTable:
        d = json.loads(path.read_text())
        first = np.asarray(d["first_call_ms"], float)
        return cls(
            d["arms"],
            d["names"],
            d["contexts"],
            np.asarray(d["latency"], float),
            np.asarray(d["quality"], float),
            np.where(first < 0, np.nan, first),
            int(d["threads"]),
        )


def workload(n: int, seed: int) -> list[list[str]]:
    """``n`` batches of synthetic sentences (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        size = int(np.clip(np.round(np.exp(rng.uniform(0, np.log(64)))), 1, 64))
        longest = int(np.clip(np.round(np.exp(rng.uniform(np.log(8), np.log(256)))), 8, 256))
        texts = []
        for j in range(size):
            # One text reaches the longest length; the rest vary, so padding varies.
            words = longest - 2 if j == 0 else max(1, int((longest - 2) * rng.uniform(0.2, 1.0)))
            texts.append(" ".join(rng.choice(WORDS, size=words)))
        batches.append(texts)
    return batches


def workload_cell(size: int, longest: int, seed: int) -> list[str]:
    """One batch of ``size`` texts whose longest is about ``longest`` tokens."""
    rng = np.random.default_rng(seed)
    texts = []
    for j in range(size):
        words = longest - 2 if j == 0 else max(1, int((longest - 2) * rng.uniform(0.2, 1.0)))
        texts.append(" ".join(rng.choice(WORDS, size=max(1, words))))
    return texts


def measure(
    batches: list[list[str]],
    threads: int,
    repeats: int = 3,
    label: str = "table",
    arms: Any = None,
    deadline: float | None = None,
) -> AccelTable:
    """Run every standard arm this device supports (or those of ``arms``) on every batch
    (see the module docstring); with ``deadline`` (time.monotonic()), the batches measured
    by then."""
    import torch

    from tasks.kinds.accel import STANDARD_ARMS
    from tasks.kinds.inference import FEATURES, InferenceKind, batch_context, token_lengths
    from tasks.kinds.inference_models import DEFAULT_MODEL, load_bundle, shape_bucket
    from workers.kinds.inference import device_profile

    torch.set_num_threads(threads)
    kind = InferenceKind()
    bundle = load_bundle(DEFAULT_MODEL)
    descriptors = bundle.descriptors()
    device = device_profile()
    pool = STANDARD_ARMS if arms is None else arms
    arms = [a for a in pool if a.unsupported_reason(str(device["type"])) is None]
    T, K = len(batches), len(arms)
    lat = np.zeros((T, K))
    qual = np.zeros((T, K))
    first = np.full((T, K), np.nan)
    contexts = []
    seen: set[tuple[int, int]] = set()
    t0 = time.time()
    for t, texts in enumerate(batches):
        if deadline is not None and time.monotonic() > deadline and t > 0:
            T = t
            break
        lengths = token_lengths(bundle, texts, 256)
        bucket = shape_bucket(len(lengths), max(lengths))
        ctx = batch_context(lengths, device, descriptors, bucket in seen)
        seen.add(bucket)
        contexts.append({f: ctx[f] for f in FEATURES})
        for k, arm in enumerate(arms):
            out = kind.run(
                {"texts": texts, "max_length": 256},
                arm.to_json(),
                {"monitor": True, "repeats": repeats},
            )
            lat[t, k] = out.cost
            qual[t, k] = out.quality if out.quality is not None else np.nan
            fc = out.metrics.get("first_call_ms")
            if fc is not None:
                first[t, k] = fc
        if (t + 1) % 10 == 0 or t + 1 == T:
            el = time.time() - t0
            print(
                f"  {label}: {t + 1}/{T} batches, {el:.0f} s, "
                f"eta {el / (t + 1) * (T - t - 1):.0f} s",
                file=sys.stderr,
                flush=True,
            )
    lat, qual, first = lat[:T], qual[:T], first[:T]
    return AccelTable(
        [a.to_json() for a in arms], [a.name for a in arms], contexts, lat, qual, first, threads
    )


def get_table(out: Path, n: int, seed: int, threads: int, repeats: int) -> AccelTable:
    path = out / f"accel_T{n}_s{seed}_th{threads}_r{repeats}.json"
    if path.exists():
        return AccelTable.load(path)
    print(f"measuring {n} batches x every arm at {threads} thread(s) ...", file=sys.stderr)
    tab = measure(workload(n, seed), threads, repeats, label=f"seed {seed}")
    out.mkdir(parents=True, exist_ok=True)
    tab.save(path)
    return tab


if __name__ == "__main__":  # measure tables ahead of the benchmark: accel_table.py N SEED TH
    n, seed, th = (int(v) for v in sys.argv[1:4])
    get_table(Path(__file__).resolve().parents[1] / "bench-out", n, seed, th, 2)
