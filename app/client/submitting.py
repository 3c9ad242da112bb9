"""Submitting instances: validated in full, then inserted in one statement (PostgreSQL) or
one transaction, with the blobs they reference recorded for the store's garbage collector."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from app.client import store
from app.client.base import CampaignBase
from app.client.solution import Solution
from app.client.store import Prepared
from app.contexts import validate_context
from models import Campaign as CampaignRow
from tasks.chain import SolutionOf, has_items, parents, resolve_items
from tasks.errors import InputError
from tasks.kinds import get_kind
from tasks.kinds.base import TrialKind
from tasks.linsys import LinearSystem, system_size


class Submission(CampaignBase):
    """Queueing instances (all or none per call)."""

    def _spec(
        self,
        row: CampaignRow,
        system: Any,
        spec: dict[str, Any],
        field: str,
        position: int = 0,
        item_ids: Callable[[], list[int]] | None = None,
    ) -> dict[str, Any]:
        """The validated wire spec of one item; ``item_ids`` gives the ids of the call's
        items (reserved on first use) for ``SolutionOf.item`` references."""
        kind = get_kind(row.kind)
        full = dict(spec)
        settings = self.client.settings
        if system is not None:
            if not isinstance(system, LinearSystem):
                raise InputError(f"{field}system", "must be an app.LinearSystem")
            full["system"] = system.to_spec(self.client._put, settings.inline_bytes)
        x0 = full.get("x0")
        if isinstance(x0, SolutionOf):
            n = system.n if isinstance(system, LinearSystem) else None
            if n is None:
                raise InputError(f"{field}x0", "SolutionOf needs the instance's system")
            full["x0"] = x0.to_wire(n, self.client._put, "x0")
        elif isinstance(x0, Solution):
            full["x0"] = x0.x_ref
        elif x0 is not None and not isinstance(x0, dict):
            arr = np.asarray(x0, dtype=np.float64).ravel()
            full["x0"] = (
                self.client._put("vector", arr)
                if 24 * arr.size > settings.inline_bytes
                else arr.tolist()
            )
        if has_items(full):
            resolve_items(full, position, None if item_ids is None else item_ids(), field)
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
        context)`` or ``(system, context, item_spec)``; ``item_spec`` overrides ``spec``.
        A chained value may name an earlier item of the call (``SolutionOf.item(j)``)."""
        items = list(items)
        with self.client.Session() as s, s.begin():
            row = self._meta(s)
            features = list(row.context_features)
            kind = get_kind(row.kind)
            prepared = []
            reserved: list[int] = []

            def item_ids() -> list[int]:
                if not reserved:  # only calls with SolutionOf.item pay for the reservation
                    reserved.extend(store.reserve_instance_ids(s, len(items)))
                return reserved

            for i, item in enumerate(items):
                where = f"items[{i}]." if i else ""
                if not isinstance(item, tuple) or len(item) not in (2, 3):
                    raise InputError(f"items[{i}]", "must be (system, context[, spec])")
                system, context = item[0], item[1]
                own = {**spec, **item[2]} if len(item) == 3 else spec
                out = self._spec(row, system, own, where, i, item_ids)
                self._check_instance(s, kind, out, where)
                derived = {**kind.context_features(out), **self._reuse(kind, out)}
                if derived and isinstance(context, Mapping):  # the caller's values win
                    context = {**{k: v for k, v in derived.items() if k in features}, **context}
                ctx = validate_context(context, features, f"{where}context")
                prepared.append((ctx, out))
            self._check_chains(s, prepared, reserved)
            ids = self._insert(s, prepared, reserved or None)
        self.client._wake(self.name)
        return ids

    def _reuse(self, kind: Any, spec: dict[str, Any]) -> dict[str, float]:
        """``setup_cached``: whether this handle submitted an instance with the same reuse
        key before (what a worker caches across trials; see ``TrialKind.reuse_key``)."""
        key = kind.reuse_key(spec)
        if key is None:
            return {}
        seen: set[str] = self.__dict__.setdefault("_reuse_seen", set())
        warm = key in seen
        seen.add(key)
        return {"setup_cached": 1.0 if warm else 0.0}

    def _check_instance(self, s: Any, kind: Any, spec: dict[str, Any], where: str) -> None:
        """The kind's say on whether the campaign's arms can solve this instance (the arms
        read once per handle)."""
        if type(kind).check_instance is TrialKind.check_instance:
            return
        arms = getattr(self, "_arm_values", None)
        if arms is None:
            arms = self._arm_values = store.arm_values(s, self.id)
        try:
            kind.check_instance(spec, arms)
        except InputError as exc:
            raise InputError(f"{where}{exc.field}", exc.message) from exc

    def _check_chains(self, s: Any, prepared: Prepared, reserved: list[int]) -> None:
        """Every ``SolutionOf`` names an earlier instance of this campaign (or an earlier
        item of this call), of the same size, that returns its solution (else its worker
        would never name one)."""
        links = [
            (i, f, iid, n) for i, (_c, sp_) in enumerate(prepared) for f, iid, n in parents(sp_)
        ]
        if not links:
            return
        own = {iid: prepared[j][1] for j, iid in enumerate(reserved)}
        earlier = sorted({iid for _i, _f, iid, _n in links if iid not in own})
        specs = {**(store.instance_specs(s, self.id, earlier) if earlier else {}), **own}
        for i, f, iid, n in links:
            where = f"items[{i}].{f}" if i else f
            parent = specs.get(iid)
            if parent is None:
                raise InputError(where, f"instance {iid} is not an instance of {self.name!r}")
            if not parent.get("return_solution"):
                raise InputError(
                    where, f"instance {iid} was submitted without return_solution=True"
                )
            size = system_size(parent.get("system"))
            if size is not None and size != n:
                raise InputError(where, f"instance {iid} has {size} unknowns, not {n}")

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

    def _insert(self, s: Any, prepared: Prepared, ids_given: list[int] | None = None) -> list[int]:
        """Insert validated (context, spec) pairs with consecutive sequence numbers (and the
        ids reserved for them, when given)."""
        if not prepared:
            return []
        ids = store.insert_instances(s, self.id, prepared, ids_given)
        if ids is None:
            raise self._not_active()
        from tasks.store.blobs import refs_in

        store.link_blobs(
            s,
            [
                {
                    "sha256": r["sha256"],
                    "nbytes": int(r["nbytes"]),
                    "campaign_id": self.id,
                    "instance_id": iid,
                }
                for iid, (_ctx, sp_) in zip(ids, prepared, strict=True)
                for r in refs_in(sp_)
            ],
        )
        return ids

    def _not_active(self) -> InputError:
        with self.client.Session() as s2:
            state = store.campaign_status(s2, self.id)
        return InputError(
            "campaign",
            f"campaign {self.name!r} was deleted"
            if state is None
            else f"campaign {self.name!r} is {state}",
        )
