"""The client's entry point: connections, the array store, campaigns.

``Client`` is cheap to create and safe to use from one thread at a time; it owns one engine and
(lazily) one broker connection and one store, closed by :meth:`Client.close` or a ``with``
block.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import kombu
import scipy.sparse as sp

from app import db
from app.client import store
from app.client.campaign import Campaign
from app.client.creating import create_campaign
from app.client.waiting import Completions
from app.config import Settings
from tasks.errors import InputError, NotFoundError, SchemaMissingError, StoreError
from tasks.messages import WakeUp, events_queue, results_queue

log = logging.getLogger("banditq.client")


#: uploads a client remembers (and holds) so that the same array is not uploaded twice
UPLOAD_MEMO = 16


class Client:
    """Entry point. URLs default to ``BANDITQ_DATABASE_URL``/``BANDITQ_BROKER_URL``; with
    neither set, the embedded default (SQLite file and a filesystem broker under
    ``BANDITQ_HOME``, by default this user's data folder), whose schema is created on first
    use."""

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
        self._teller: Any = None
        #: ask/tell's connection (app.client.asked.AskWaiter), opened by the first ask
        self._asked: Any = None
        self._store: Any = None
        self.completions = Completions(self.engine)
        #: (kind, id(array)) -> (array, ref) of the last UPLOAD_MEMO uploads: an array
        #: submitted again is not re-uploaded; older ones are let go (not held for the
        #: client's lifetime: a long simulation uploads a new vector every step)
        self._uploads: OrderedDict[tuple[str, int], tuple[Any, dict[str, Any]]] = OrderedDict()
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
        for part in ("_waker", "_teller", "_asked"):
            if getattr(self, part) is not None:
                getattr(self, part).close()
                setattr(self, part, None)
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
            self._uploads.move_to_end(key)
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
            from tasks.kinds.krylov_features import upload_features
            from tasks.linsys import StoredMatrix

            mat = sp.csr_matrix(value)
            ref = {**ref, **StoredMatrix.describe(mat), **upload_features(mat)}
        self._uploads[key] = (value, ref)
        while len(self._uploads) > UPLOAD_MEMO:
            self._uploads.popitem(last=False)
        return ref

    def store_matrix(self, A: Any) -> Any:
        """Upload ``A`` once; the handle serves any number of systems
        (``LinearSystem.affine(handle, b, alpha, beta)``) without uploading it again."""
        from tasks.linsys import StoredMatrix, _matrix

        return StoredMatrix(self._put("csr", _matrix(A)))

    # ------------------------------------------------------------------ campaigns
    #: Create a campaign (validated in full before anything is written); see
    #: :func:`app.client.creating.create_campaign` for the arguments.
    create_campaign = create_campaign

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
        from tasks.kinds.accel import STANDARD_ARMS

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

    def campaign(self, name: str) -> Campaign:
        with self.Session() as s:
            cid = store.campaign_id_named(s, name)
        if cid is None:
            raise NotFoundError(f"no campaign named {name!r}; `banditq status` lists them")
        return Campaign(self, cid, name)

    def campaigns(self) -> list[str]:
        with self.Session() as s:
            return store.campaign_names(s)

    # ------------------------------------------------------------------ broker
    def _publisher(self, queue: Any) -> Any:
        """A publisher to ``queue`` on a channel held open (declared once)."""
        from tasks.channel import ChannelPublisher

        return ChannelPublisher(
            lambda: kombu.Connection(
                self.settings.broker_url,
                transport_options=self.settings.broker_transport_options(),
            ),
            queue,
            max_retries=2,
        )

    def _tell(self, body: str) -> None:
        """Publish a tell's result to the scheduler (as a worker publishes one). A failure
        is logged, not raised: the tell is stored on its trial, and the scheduler's sweep
        records it from there."""
        try:
            if self._teller is None:
                self._teller = self._publisher(
                    results_queue(self.settings.queue, self.settings.queue_type)
                )
            self._teller.publish(body)
        except Exception as exc:
            log.warning("could not send a tell to the scheduler (%s); its sweep records it", exc)

    def _wake(self, name: str, reload: bool = False) -> None:
        """Tell the scheduler there is work; if the broker is down its sweep finds it anyway.
        Published on a channel held open (declared once): a wake-up costs no round trip of
        its own beyond the publish."""
        try:
            if self._waker is None:
                self._waker = self._publisher(
                    events_queue(self.settings.queue, self.settings.queue_type)
                )
            self._waker.publish(json.dumps(WakeUp(name, reload).to_json()))
        except Exception as exc:
            log.warning("could not notify the scheduler (%s); its sweep will pick it up", exc)
