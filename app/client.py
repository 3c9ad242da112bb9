"""The Python client: create campaigns, submit instances, wait, read results.

``Client`` is cheap to create and safe to use from one thread at a time; it owns one engine and
(lazily) one broker connection, closed by :meth:`Client.close` or a ``with`` block.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kombu
import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select, text, update

from app import db
from app.config import Settings
from app.contexts import validate_context
from app.errors import InputError, NotFoundError, SchemaMissingError, StoreError
from app.linsys import LinearSystem
from app.policies.base import arm_positions
from app.policies.registry import make_policy, policy_class, resolve_name
from app.waiting import Completions, Poll
from models import Arm, BlobRef, Instance, PolicySnapshot, Result, Trial
from models import Campaign as CampaignRow
from tasks.kinds import get_kind
from tasks.kinds.base import arm_name
from tasks.messages import WakeUp, events_queue

log = logging.getLogger("banditq.client")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
FEATURE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FINAL = ("done", "failed")
_INSERT_PG = text(
    "WITH c AS (UPDATE campaigns SET n_instances = n_instances + :n "
    "WHERE id = :cid AND status = 'active' RETURNING n_instances) "
    "INSERT INTO instances (campaign_id, seq, context, spec, status, created_at) "
    "SELECT :cid, c.n_instances - :n + v.ord - 1, v.context, v.spec, 'pending', :now "
    "FROM c, unnest(CAST(:contexts AS jsonb[]), CAST(:specs AS jsonb[])) "
    "WITH ORDINALITY AS v(context, spec, ord) RETURNING id, seq"
)
#: one instance's final trial and its result, or no row while it is not finished
SOLUTION_SQL = (
    "SELECT t.id, t.state, r.iterations, r.converged, r.residual, r.latency_ms, r.outputs, "
    "a.value, r.error FROM instances i JOIN trials t ON t.instance_id = i.id "
    "JOIN arms a ON a.id = t.arm_id "
    "LEFT JOIN results r ON r.trial_id = t.id AND r.attempt = t.attempt "
    "WHERE i.id = {i} AND i.status IN ('done', 'failed') ORDER BY t.id DESC"
)


def expand_arms(
    arms: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """``{"omega": [1.0, 1.5]}`` (a grid over keys) or a list of arm dicts -> list of dicts."""
    if isinstance(arms, Mapping):
        if not arms:
            raise InputError("arms", "must name at least one parameter")
        keys = list(arms)
        for k in keys:
            vals = arms[k]
            if isinstance(vals, str | bytes) or not isinstance(vals, Sequence | np.ndarray):
                raise InputError(f"arms.{k}", "must be a list of values")
            if len(vals) == 0:
                raise InputError(f"arms.{k}", "must list at least one value")
        out = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*arms.values())]
    elif isinstance(arms, Sequence) and not isinstance(arms, str | bytes):
        out = []
        for i, a in enumerate(arms):
            if not isinstance(a, Mapping) or not a:
                raise InputError(f"arms[{i}]", "must be a non-empty mapping of parameters")
            out.append(dict(a))
    else:
        raise InputError("arms", "must be a mapping of parameter -> values, or a list of mappings")
    if not out:
        raise InputError("arms", "must define at least one arm")
    clean: list[dict[str, Any]] = []
    for i, a in enumerate(out):
        try:
            clean.append(json.loads(json.dumps(a, allow_nan=False, default=_np_default)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"arms[{i}]", f"values must be JSON numbers/strings: {exc}") from exc
    names = [arm_name(a) for a in clean]
    if len(set(names)) != len(names):
        raise InputError("arms", "contains duplicate arms")
    return clean


def _np_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


@dataclass
class Solution:
    """What :meth:`Campaign.solve` returns: the trial's stats and the solution, stored by the
    worker in the array store and loaded on first use of ``x`` (``x_ref`` is its reference:
    pass it as the next solve's ``x0`` and nothing travels through the client)."""

    x_ref: dict[str, Any] | None
    iterations: int | None
    converged: bool | None
    residual: float | None
    latency_ms: float | None
    arm: dict[str, Any]
    trial_id: int
    status: str
    client: Client | None = None
    _x: np.ndarray | None = None

    @property
    def x(self) -> np.ndarray:
        if self._x is None:
            if self.x_ref is None or self.client is None:
                raise LookupError(f"trial {self.trial_id} returned no solution")
            from tasks.store.blobs import decode

            self._x = np.asarray(decode("vector", self.client.store.get(self.x_ref["sha256"])))
        return self._x


class Client:
    """Entry point. URLs default to ``BANDITQ_DATABASE_URL``/``BANDITQ_BROKER_URL``; with
    neither set, the embedded default (SQLite file and a filesystem broker under
    ``BANDITQ_HOME``, default ``./.banditq``), whose schema is created on first use."""

    def __init__(
        self,
        database_url: str | None = None,
        broker_url: str | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env(
            database_url=database_url, broker_url=broker_url
        )
        self.engine = db.make_engine(self.settings.database_url)
        self.Session = db.session_factory(self.engine)
        self._waker: Any = None
        self._store: Any = None
        self.completions = Completions(self.engine)
        #: (kind, id(array)) -> (array, ref): an array submitted again is not re-uploaded
        self._uploads: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
        if self.engine.dialect.name == "sqlite":
            if not db.is_current(self.engine):
                db.upgrade(self.settings.database_url)
        elif db.is_behind(self.engine):
            where = self.settings.redacted()["database_url"]
            found = db.current_revision(self.engine)
            self.engine.dispose()
            raise SchemaMissingError(
                f"database {where} has no banditq schema; run `banditq db upgrade` first"
                if found is None
                else f"database {where} is at schema revision {found}, this banditq needs "
                f"{db.head_revision()}; run `banditq db upgrade` (in place, data kept)"
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self.completions.close()
        self.engine.dispose()

    # ------------------------------------------------------------------ array store
    @property
    def store(self) -> Any:
        """The array store (``BANDITQ_STORE_URL``), opened on first use."""
        if self._store is None:
            from tasks.store.open import open_store

            self._store = open_store(self.settings)
        return self._store

    def _put(self, kind: str, value: Any) -> dict[str, Any]:
        """Upload an array (``csr`` or ``vector``) unless this client already did; its ref."""
        from tasks.store.blobs import BlobError, csr_ref, vector_ref

        key = (kind, id(value))
        memo = self._uploads.get(key)
        if memo is not None and memo[0] is value:
            return memo[1]
        ref, data = csr_ref(value) if kind == "csr" else vector_ref(value)
        if ref["nbytes"] > self.settings.max_stored_bytes:
            raise InputError(
                "system",
                f"{ref['nbytes']} bytes exceed BANDITQ_MAX_STORED_BYTES="
                f"{self.settings.max_stored_bytes}",
            )
        try:
            self.store.put(data)
        except BlobError as exc:
            raise StoreError(str(exc)) from exc
        if kind == "csr":
            from app.linsys import StoredMatrix

            ref = {**ref, **StoredMatrix.describe(sp.csr_matrix(value))}
        self._uploads[key] = (value, ref)
        return ref

    def store_matrix(self, A: Any) -> Any:
        """Upload ``A`` once; the handle serves any number of systems
        (``LinearSystem.affine(handle, b, alpha, beta)``) without uploading it again."""
        from app.linsys import StoredMatrix, _matrix

        return StoredMatrix(self._put("csr", _matrix(A)))

    # ------------------------------------------------------------------ campaigns
    def create_campaign(
        self,
        name: str,
        kind: str,
        arms: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        policy: str = "default",
        context_features: Sequence[str] = (),
        *,
        policy_config: Mapping[str, Any] | None = None,
        seed: int = 0,
        max_in_flight: int = 4,
        max_attempts: int = 3,
        exist_ok: bool = False,
        warm_start_from: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        max_trial_seconds: float | None = None,
    ) -> Campaign:
        """Create a campaign (validated in full before anything is written)."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InputError(
                "name",
                "must be 1-200 characters of letters, digits and . _ : - (starting with a "
                f"letter or digit), got {name!r}",
            )
        kind_impl = get_kind(kind)
        arm_list = expand_arms(arms)
        kind_impl.validate_arms(arm_list)
        if not isinstance(policy, str) or not policy:
            raise InputError("policy", f"must be a policy name, got {policy!r}")
        policy = resolve_name(policy, kind_impl.default_policy)
        policy_class(policy)  # unknown, or failing to import: an error naming it, now
        features = list(context_features)
        for i, f in enumerate(features):
            if not isinstance(f, str) or not FEATURE_RE.match(f):
                raise InputError(f"context_features[{i}]", f"must be an identifier, got {f!r}")
        if len(set(features)) != len(features):
            raise InputError("context_features", "contains duplicates")
        for fld, v, lo in (
            ("max_in_flight", max_in_flight, 1),
            ("max_attempts", max_attempts, 1),
            ("seed", seed, 0),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(fld, f"must be an integer >= {lo}, got {v!r}")
        extra = dict(settings or {})
        if max_trial_seconds is not None:
            mts = max_trial_seconds
            if isinstance(mts, bool) or not isinstance(mts, int | float) or not 0 < mts < 1e7:
                raise InputError("max_trial_seconds", f"must be a positive number, got {mts!r}")
            extra["limits"] = {**extra.get("limits", {}), "max_seconds": float(mts)}
        options = kind_impl.campaign_options(extra)
        if options:
            extra["kind_options"] = options
        config = dict(policy_config or {})
        arm_list, extra, config, features = kind_impl.prepare_campaign(
            arm_list, extra, policy, config, features
        )
        try:  # build once now so a bad config fails here, not in the scheduler
            probe = make_policy(
                policy,
                len(arm_list),
                len(features),
                arms=arm_positions(arm_list),
                seed=seed,
                config=config,
            )
        except ValueError as exc:
            raise InputError("policy_config", str(exc)) from exc
        with self.Session() as s, s.begin():
            existing = s.scalar(select(CampaignRow).where(CampaignRow.name == name))
            if existing is not None:
                if exist_ok:
                    return Campaign(self, existing.id, name)
                raise InputError("name", f"campaign {name!r} already exists (exist_ok=True reuses)")
            row = CampaignRow(
                name=name,
                kind=kind,
                policy=policy,
                policy_config=config,
                context_features=features,
                seed=seed,
                max_in_flight=max_in_flight,
                max_attempts=max_attempts,
                settings=extra,
            )
            s.add(row)
            s.flush()
            for i, a in enumerate(arm_list):
                label = kind_impl.arm_label(a)
                s.add(Arm(campaign_id=row.id, index=i, name=label, value=a))
            if warm_start_from:
                self._warm_start(s, row, probe, list(warm_start_from))
            cid = row.id
        return Campaign(self, cid, name)

    def create_inference_campaign(
        self,
        name: str,
        *,
        model: str | None = None,
        arms: Sequence[Mapping[str, Any]] | None = None,
        quality_floor: float | None = 0.99,
        monitor_fraction: float = 0.1,
        device: Any = "auto",
        policy: str = "default",
        **kwargs: Any,
    ) -> Campaign:
        """An ``inference`` campaign: the standard acceleration arms (those this device can
        run) unless ``arms`` is given, the quality floor as a learnt constraint, and the
        bundled all-MiniLM-L6-v2 unless ``model`` names a bundle factory by import path.
        Other keywords go to :meth:`create_campaign`."""
        from app.accel import STANDARD_ARMS

        settings: dict[str, Any] = dict(kwargs.pop("settings", None) or {})
        settings.update(
            quality_floor=quality_floor, monitor_fraction=monitor_fraction, device=device
        )
        if model is not None:
            settings["model"] = model
        arm_list = [a.to_json() for a in STANDARD_ARMS] if arms is None else list(arms)
        return self.create_campaign(
            name, "inference", arm_list, policy, settings=settings, **kwargs
        )

    def _warm_start(self, s: Any, row: CampaignRow, policy: Any, sources: list[str]) -> None:
        """Seed the new policy with earlier campaigns' results (same kind, same arms)."""
        from app.warmstart import warm_state

        state = warm_state(s, row, policy, sources)
        s.add(
            PolicySnapshot(
                campaign_id=row.id,
                policy_name=policy.name,
                policy_version=policy.version,
                n_updates=policy.n_updates,
                last_result_id=0,
                state=state,
            )
        )

    def campaign(self, name: str) -> Campaign:
        with self.Session() as s:
            cid = s.scalar(select(CampaignRow.id).where(CampaignRow.name == name))
        if cid is None:
            raise NotFoundError(f"no campaign named {name!r}; `banditq status` lists them")
        return Campaign(self, cid, name)

    def campaigns(self) -> list[str]:
        with self.Session() as s:
            return list(s.scalars(select(CampaignRow.name).order_by(CampaignRow.id)))

    # ------------------------------------------------------------------ broker
    def _wake(self, name: str) -> None:
        """Tell the scheduler there is work; if the broker is down its sweep finds it anyway.
        Published on a channel held open (declared once): a wake-up costs no round trip of
        its own beyond the publish."""
        from tasks.channel import ChannelPublisher

        try:
            if self._waker is None:
                self._waker = ChannelPublisher(
                    lambda: kombu.Connection(
                        self.settings.broker_url,
                        transport_options=self.settings.broker_transport_options(),
                    ),
                    events_queue(self.settings.queue, self.settings.queue_type),
                    max_retries=2,
                )
            self._waker.publish(json.dumps(WakeUp(name).to_json()))
        except Exception as exc:
            log.warning("could not notify the scheduler (%s); its sweep will pick it up", exc)


class Campaign:
    """A handle on one campaign; holds no state beyond its id (reads go to the database)."""

    def __init__(self, client: Client, campaign_id: int, name: str) -> None:
        self.client = client
        self.id = campaign_id
        self.name = name
        self._cached: CampaignRow | None = None

    def __repr__(self) -> str:
        return f"Campaign({self.name!r})"

    def _row(self, s: Any) -> CampaignRow:
        row = s.get(CampaignRow, self.id)
        if row is None:
            raise NotFoundError(f"campaign {self.name!r} was deleted")
        return row

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

    def _meta(self, s: Any) -> CampaignRow:
        """The campaign's row as created (kind, features, settings never change), read once
        per handle; the status is checked when sequence numbers are reserved."""
        if self._cached is None:
            self._cached = self._row(s)
            s.expunge(self._cached)
        return self._cached

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
        from app.inference import batch_instances

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

    def counts(self) -> dict[str, int]:
        with self.client.Session() as s:
            rows = s.execute(
                select(Instance.status, func.count())
                .where(Instance.campaign_id == self.id)
                .group_by(Instance.status)
            ).all()
        return {str(k): int(v) for k, v in rows}

    def wait(
        self,
        timeout: float | None = None,
        progress: bool = False,
        instance_ids: Sequence[int] | None = None,
    ) -> dict[str, int]:
        """Block until every instance (or those given) is done or failed.

        On PostgreSQL it wakes on the scheduler's ``NOTIFY`` (raised in the transaction that
        records a result), re-checking at least every second; on the embedded default it
        polls (5 ms, backing off to 0.5 s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        # one instance (solve, embed) is expected soon: poll briskly
        cap = 0.02 if instance_ids is not None else 0.5
        poll = Poll(0.005, 1.5, cap, cap)
        self.client.completions.listening()
        try:
            while True:
                if instance_ids is None:
                    counts = self.counts()
                    total = sum(counts.values())
                    final = sum(counts.get(k, 0) for k in FINAL)
                else:
                    with self.client.Session() as s:
                        final = (
                            s.scalar(
                                select(func.count())
                                .select_from(Instance)
                                .where(
                                    Instance.id.in_(list(instance_ids)), Instance.status.in_(FINAL)
                                )
                            )
                            or 0
                        )
                    total, counts = len(instance_ids), {}
                if progress:
                    bar = bar or _Bar(self.name, total)
                    bar.update(final, total)
                if final >= total:
                    return counts
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"campaign {self.name!r}: {final}/{total} finished after {timeout} s; is "
                        "a scheduler (`banditq scheduler`) and a worker (`banditq worker`) running?"
                    )
                self.client.completions.pause(deadline, poll)
        finally:
            if bar is not None:
                bar.close()

    def results(self, as_frame: bool = False) -> Any:
        """Rows of the ``trial_results`` view for this campaign, in submission order."""
        with self.client.engine.connect() as conn:
            res = conn.execute(
                text(
                    "SELECT * FROM trial_results WHERE campaign = :c "
                    "ORDER BY instance_seq, trial_id"
                ),
                {"c": self.name},
            )
            rows = [_decode_row(dict(r._mapping)) for r in res]
        if as_frame:
            import pandas as pd

            return pd.DataFrame(rows)
        return rows

    def solve(
        self,
        system: LinearSystem,
        context: Mapping[str, Any] | None = None,
        timeout: float | None = 600,
        **spec: Any,
    ) -> Solution:
        """Submit, wait for this one instance, return its solution (for a simulation loop)."""
        completions = self.client.completions
        completions.listening()  # before the submit: its completion notice cannot be missed
        generation = completions.generation
        iid = self.submit(system, context, return_solution=True, **spec)
        return self._solution(iid, timeout, generation)

    def _solution(self, iid: int, timeout: float | None, generation: int | None = None) -> Solution:
        """Wait for one instance and read its result. On PostgreSQL it is read when its
        completion notice arrives (or after a second without one); when the listener was
        already listening at ``generation`` before the submit, nothing is read before."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # SQLite: a cheap query, and a solve is expected within milliseconds
        poll = Poll(0.002, 1.2, 0.005, 0.05)
        completions = self.client.completions
        look = not completions.listening() or completions.generation != generation
        while True:
            if not look:
                noticed = completions.pause(deadline, poll)
                look = noticed is None or str(iid) in noticed
                if deadline is not None and time.monotonic() > deadline:
                    look = True
                continue
            # On PostgreSQL the listening (autocommit) connection reads it: no pool checkout,
            # no transaction to end, one round trip right after the wake-up.
            seen_generation = completions.generation
            row = completions.first(SOLUTION_SQL.format(i="%(i)s"), {"i": iid})
            if row is None and not completions.listening():
                with self.client.engine.connect() as conn:
                    row = conn.execute(text(SOLUTION_SQL.format(i=":i")), {"i": iid}).first()
            if row is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.wait(timeout=0, instance_ids=[iid])  # raises the TimeoutError with advice
            # a reopened listener may have missed the notice: look again at once
            look = completions.generation != seen_generation
        outputs, arm = _json(row[6]) or {}, _json(row[7])
        if row[1] != "succeeded":
            raise RuntimeError(f"trial {row[0]} {row[1]}: {row[8]}")
        return Solution(
            outputs.get("x"),
            row[2],
            row[3],
            row[4],
            row[5],
            arm,
            int(row[0]),
            str(row[1]),
            client=self.client,
        )

    def embed(
        self, texts: Sequence[str], max_length: int = 256, timeout: float | None = 600
    ) -> np.ndarray:
        """Embed one batch through the campaign (blocks, like :meth:`solve`): an array of
        shape (len(texts), dim), float32. The policy picks the acceleration; when a quality
        probe misses the campaign's floor, the reference (fp32) output is what comes back."""
        (iid,) = self.submit_texts([list(texts)], max_length=max_length, return_outputs=True)
        self.wait(timeout=timeout, instance_ids=[iid])
        out = self.outputs(iid)
        if out is None:
            raise RuntimeError(f"instance {iid} finished without outputs")
        return out

    def outputs(self, instance_id: int) -> np.ndarray | None:
        """The embeddings an instance submitted with ``return_outputs=True`` produced (None
        when it asked for none). Raises ``RuntimeError`` if its trial failed and
        ``LookupError`` if it has not finished."""
        from tasks.arrays import decode_array

        with self.client.Session() as s:
            row = s.execute(
                select(Trial.id, Trial.state, Result.outputs, Trial.error, Result.error)
                .join(Result, (Result.trial_id == Trial.id) & (Result.attempt == Trial.attempt))
                .join(Instance, Instance.id == Trial.instance_id)
                .where(Trial.instance_id == instance_id, Instance.campaign_id == self.id)
                .order_by(Trial.id.desc())
            ).first()
        if row is None:
            raise LookupError(f"instance {instance_id} of {self.name!r} has no result yet")
        if row.state != "succeeded":
            raise RuntimeError(f"trial {row.id} {row.state}: {row[3] or row[4]}")
        outputs = _json(row.outputs) or {}
        emb = outputs.get("embeddings")
        return None if emb is None else decode_array(emb)

    def plot(self, kind: str = "cost") -> Any:
        """A matplotlib Figure of this campaign (``kind``: one of ``app.report.plots.PLOTS``:
        cost, arms, cost-by-arm, reasons, propensity, faults, workers, inference)."""
        from app.report import data, plots

        if kind not in plots.PLOTS:
            raise InputError(
                "kind", f"unknown plot {kind!r}; choose one of {', '.join(plots.PLOTS)}"
            )
        return plots.PLOTS[kind](data.load(self.client.engine, self.name), None)

    def report(self, path: str = "report.html", png_dir: str | None = None) -> str:
        """Write the self-contained HTML report (and PNGs to ``png_dir``); returns the path."""
        from app.report import data, html

        html.write_report(data.load(self.client.engine, self.name), path, png_dir)
        return path

    def status(self) -> dict[str, Any]:
        from app.status import campaign_status

        return campaign_status(self.client, self.name)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("context", "arm"):
        row[key] = _json(row.get(key))
    if row.get("converged") is not None:
        row["converged"] = bool(row["converged"])
    return row


class _Bar:
    """A rich progress bar on stderr."""

    def __init__(self, name: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.p = Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        self.p.start()
        self.task = self.p.add_task(name, total=total)

    def update(self, done: int, total: int) -> None:
        self.p.update(self.task, completed=done, total=total)

    def close(self) -> None:
        self.p.stop()


__all__ = ["Campaign", "Client", "Solution"]
