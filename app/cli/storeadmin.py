"""Retention of the array store: ``banditq store gc`` and ``banditq store stats``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.config import Settings
from app.db import make_engine, session_factory
from models import BlobRef, Campaign
from tasks.store.open import open_store, store_location


def referenced(settings: Settings) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as s:
            return set(s.scalars(select(BlobRef.sha256).distinct()))
    finally:
        engine.dispose()


def gc(settings: Settings, older_than: timedelta) -> dict[str, Any]:
    """Remove blobs no instance or result refers to and older than ``older_than`` (an
    upload whose instance is being submitted right now is younger). Returns counts."""
    store = open_store(settings)
    try:
        cutoff = datetime.now(UTC) - older_than
        # Blobs listed before the references are read: a submit that commits its reference
        # after the read re-put (touched) its blob, and the delete re-checks the age.
        listed = store.blobs()
        keep = referenced(settings)
        doomed = [b for b in listed if b.sha256 not in keep and _aware(b.created_at) < cutoff]
        removed = store.delete([b.sha256 for b in doomed], before=cutoff)
        store.drop_tags({b.sha256 for b in doomed}, cutoff)
        return {
            "store": store.location,
            "removed": removed,
            "bytes": sum(b.nbytes for b in doomed),
            "kept": len(keep),
        }
    finally:
        store.close()


def stats(settings: Settings) -> list[dict[str, Any]]:
    """Per campaign: distinct blobs it refers to and their bytes; plus unreferenced ones."""
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as s:
            # a matrix used by 1000 instances counts once per campaign
            distinct = (
                select(BlobRef.campaign_id, BlobRef.sha256, func.max(BlobRef.nbytes).label("nb"))
                .group_by(BlobRef.campaign_id, BlobRef.sha256)
                .subquery()
            )
            rows = s.execute(
                select(Campaign.name, func.count(), func.coalesce(func.sum(distinct.c.nb), 0))
                .join(distinct, distinct.c.campaign_id == Campaign.id)
                .group_by(Campaign.name)
                .order_by(Campaign.name)
            ).all()
    finally:
        engine.dispose()
    out = [{"campaign": n, "blobs": int(c), "bytes": int(b)} for n, c, b in rows]
    store = open_store(settings)
    try:
        keep = referenced(settings)
        loose = [b for b in store.blobs() if b.sha256 not in keep]
        out.append(
            {
                "campaign": "(unreferenced)",
                "blobs": len(loose),
                "bytes": sum(b.nbytes for b in loose),
            }
        )
    finally:
        store.close()
    return out


def describe(settings: Settings) -> str:
    from app.config import redact_url

    return redact_url(store_location(settings))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
