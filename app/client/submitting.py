"""Submitting instances: validated in full, then inserted in one statement (PostgreSQL) or
one transaction, with the blobs they reference recorded for the store's garbage collector."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select, text, update

from app.client.base import CampaignBase
from app.client.solution import Solution
from app.contexts import validate_context
from app.errors import InputError
from models import BlobRef, Instance
from models import Campaign as CampaignRow
from tasks.kinds import get_kind
from tasks.linsys import LinearSystem

_INSERT_PG = text(
    "WITH c AS (UPDATE campaigns SET n_instances = n_instances + :n "
    "WHERE id = :cid AND status = 'active' RETURNING n_instances) "
    "INSERT INTO instances (campaign_id, seq, context, spec, status, created_at) "
    "SELECT :cid, c.n_instances - :n + v.ord - 1, v.context, v.spec, 'pending', :now "
    "FROM c, unnest(CAST(:contexts AS jsonb[]), CAST(:specs AS jsonb[])) "
    "WITH ORDINALITY AS v(context, spec, ord) RETURNING id, seq"
)


class Submission(CampaignBase):
    """Queueing instances (all or none per call)."""

    def _spec(
        self, row: CampaignRow, system: Any, spec: dict[str, Any], field: str
    ) -> dict[str, Any]:
        kind = get_kind(row.kind)
        full = dict(spec)
        settings = self.client.settings
        if system is not None:
            if not isinstance(system, LinearSystem):
                raise InputError(f"{field}system", "must be an app.LinearSystem")
            full["system"] = system.to_spec(self.client._put, settings.inline_bytes)
        x0 = full.get("x0")
        if isinstance(x0, Solution):
            full["x0"] = x0.x_ref
        elif x0 is not None and not isinstance(x0, dict):
            arr = np.asarray(x0, dtype=np.float64).ravel()
            full["x0"] = (
                self.client._put("vector", arr)
                if 24 * arr.size > settings.inline_bytes
                else arr.tolist()
            )
        try:
            out = kind.validate_spec(full)
        except InputError as exc:
            raise InputError(f"{field}{exc.field}", exc.message) from exc
        size = len(json.dumps(out))
        if size > self.client.settings.max_payload_bytes:
            raise InputError(
                f"{field}system",
                f"payload of {size} bytes exceeds BANDITQ_MAX_PAYLOAD_BYTES="
                f"{self.client.settings.max_payload_bytes}",
            )
        return out

    def submit(
        self, system: Any = None, context: Mapping[str, Any] | None = None, **spec: Any
    ) -> int:
        """Queue one instance; returns its id. Extra keywords (``tol``, ``max_iters``) go to
        the trial kind. Everything is validated before anything is written."""
        return self.submit_many([(system, context or {})], **spec)[0]

    def submit_many(self, items: Iterable[tuple[Any, ...]], **spec: Any) -> list[int]:
        """Queue many instances in one transaction (all or none). Each item is ``(system,
        context)`` or ``(system, context, item_spec)``; ``item_spec`` overrides ``spec``."""
        with self.client.Session() as s, s.begin():
            row = self._meta(s)
            features = list(row.context_features)
            kind = get_kind(row.kind)
            prepared = []
            for i, item in enumerate(items):
                where = f"items[{i}]." if i else ""
                if not isinstance(item, tuple) or len(item) not in (2, 3):
                    raise InputError(f"items[{i}]", "must be (system, context[, spec])")
                system, context = item[0], item[1]
                own = {**spec, **item[2]} if len(item) == 3 else spec
                out = self._spec(row, system, own, where)
                derived = kind.context_features(out)
                if derived and isinstance(context, Mapping):  # the caller's values win
                    context = {**{k: v for k, v in derived.items() if k in features}, **context}
                ctx = validate_context(context, features, f"{where}context")
                prepared.append((ctx, out))
            ids = self._insert(s, prepared)
        self.client._wake(self.name)
        return ids

    def submit_texts(
        self,
        batches: Iterable[Sequence[str]],
        max_length: int = 256,
        return_outputs: bool = False,
    ) -> list[int]:
        """Queue inference batches (one instance per list of texts) in one transaction; the
        context features (batch shape, padding, device, model) are computed here with the
        campaign's tokenizer. With ``return_outputs`` the worker sends the embeddings back
        (float32, binary), readable with :meth:`outputs`."""
        from app.client.inference import batch_instances

        if not isinstance(return_outputs, bool):
            raise InputError("return_outputs", f"must be True or False, got {return_outputs!r}")

        with self.client.Session() as s, s.begin():
            row = self._row(s)
            if row.kind != "inference":
                raise InputError("campaign", f"{self.name!r} is a {row.kind!r} campaign")
            if row.status != "active":
                raise InputError("campaign", f"campaign {self.name!r} is {row.status}")
            prepared = []
            pairs = batch_instances(s, row, batches, max_length, return_outputs)
            for i, (ctx, sp) in enumerate(pairs):
                where = f"batches[{i}]."
                ctx = validate_context(ctx, list(row.context_features), f"{where}context")
                prepared.append((ctx, self._spec(row, None, sp, where)))
            ids = self._insert(s, prepared)
        self.client._wake(self.name)
        return ids

    def _insert(self, s: Any, prepared: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[int]:
        """Insert validated (context, spec) pairs with consecutive sequence numbers."""
        if not prepared:
            return []
        if s.bind.dialect.name == "postgresql":
            ids = self._insert_pg(s, prepared)
        else:
            ids = self._insert_portable(s, prepared)
        from tasks.store.blobs import refs_in

        links = [
            {
                "sha256": r["sha256"],
                "nbytes": int(r["nbytes"]),
                "campaign_id": self.id,
                "instance_id": iid,
            }
            for iid, (_ctx, sp_) in zip(ids, prepared, strict=True)
            for r in refs_in(sp_)
        ]
        if links:  # what `banditq store gc` must keep, and `store stats` counts
            s.execute(BlobRef.__table__.insert(), links)  # type: ignore[attr-defined]
        return ids

    def _not_active(self) -> InputError:
        with self.client.Session() as s2:
            state = s2.scalar(select(CampaignRow.status).where(CampaignRow.id == self.id))
        return InputError(
            "campaign",
            f"campaign {self.name!r} was deleted"
            if state is None
            else f"campaign {self.name!r} is {state}",
        )

    def _insert_pg(
        self, s: Any, prepared: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[int]:
        """One statement: reserve the sequence numbers (the campaign row's lock serializes
        concurrent submitters; nothing is inserted unless the campaign is active) and insert."""
        from models.base import json_dumps, utcnow

        rows = s.execute(
            _INSERT_PG,
            {
                "cid": self.id,
                "n": len(prepared),
                "contexts": [json_dumps(ctx) for ctx, _sp in prepared],
                "specs": [json_dumps(sp) for _ctx, sp in prepared],
                "now": utcnow(),
            },
        ).all()
        if not rows:
            raise self._not_active()
        return [int(i) for i, _seq in sorted(rows, key=lambda r: r[1])]

    def _insert_portable(
        self, s: Any, prepared: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[int]:
        # Reserve consecutive sequence numbers (the row lock serializes concurrent
        # submitters) and check the campaign still takes instances, in one round trip.
        end = s.scalar(
            update(CampaignRow)
            .where(CampaignRow.id == self.id, CampaignRow.status == "active")
            .values(n_instances=CampaignRow.n_instances + len(prepared))
            .returning(CampaignRow.n_instances)
        )
        if end is None:
            raise self._not_active()
        base = int(end) - len(prepared)
        rows = [
            {
                "campaign_id": self.id,
                "seq": base + j,
                "context": ctx,
                "spec": sp,
                "status": "pending",
            }
            for j, (ctx, sp) in enumerate(prepared)
        ]
        return list(
            s.scalars(
                Instance.__table__.insert().returning(  # type: ignore[attr-defined]
                    Instance.id, sort_by_parameter_order=True
                ),
                rows,
            )
        )
