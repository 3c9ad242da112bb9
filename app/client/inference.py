"""Client side of inference campaigns: compute batch contexts (settings: see
:mod:`tasks.kinds.inference_campaign`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.client import store
from models import Campaign as CampaignRow
from tasks.errors import InputError
from tasks.kinds.inference_campaign import AUTO_DEVICE


def batch_instances(
    session: Session,
    row: CampaignRow,
    batches: Iterable[Sequence[str]],
    max_length: int,
    return_outputs: bool = False,
) -> Iterator[tuple[dict[str, float], dict[str, Any]]]:
    """(context, spec) per batch; ``shape_warm`` says whether the campaign already ran a batch
    in the same shape bucket (so compiled arms have a graph for it)."""
    from tasks.kinds.inference import batch_context, token_lengths
    from tasks.kinds.inference_models import load_bundle, shape_bucket

    settings = row.settings or {}
    bundle = load_bundle(settings["kind_options"]["model"])
    # Only the distinct shapes already submitted, not every instance's context.
    shapes = store.batch_shapes(session, row.id)
    seen = {shape_bucket(int(b or 1), int(n or 1)) for b, n in shapes}
    for i, texts in enumerate(batches):
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise InputError(f"batches[{i}]", "must be a non-empty list of strings")
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise InputError(f"batches[{i}]", "every text must be a non-blank string")
        lengths = token_lengths(bundle, list(texts), max_length)
        bucket = shape_bucket(len(lengths), max(lengths))
        # With device "auto" the scheduler fills the device features of the worker class it
        # picks; these placeholders never reach a policy.
        device = settings["device"] if isinstance(settings["device"], dict) else AUTO_DEVICE
        ctx = batch_context(lengths, device, settings["descriptors"], bucket in seen)
        seen.add(bucket)
        features = list(row.context_features)
        spec: dict[str, Any] = {"texts": list(texts), "max_length": max_length}
        if return_outputs:
            spec["return_outputs"] = True
        yield {f: ctx[f] for f in features}, spec
