"""What every part of a campaign handle shares: its identity and its row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.client import store
from models import Campaign as CampaignRow
from tasks.errors import NotFoundError

if TYPE_CHECKING:
    from app.client.session import Client


class CampaignBase:
    """A handle on one campaign; holds no state beyond its id and its immutable settings
    (reads go to the database). Not thread-safe, like its client."""

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

    def _meta(self, s: Any) -> CampaignRow:
        """The campaign's row as created (kind, features, settings never change), read once
        per handle; the status is checked when sequence numbers are reserved."""
        if self._cached is None:
            self._cached = self._row(s)
            s.expunge(self._cached)
        return self._cached

    def counts(self) -> dict[str, int]:
        """Instances per status (pending, decided, done, failed)."""
        with self.client.Session() as s:
            return store.status_counts(s, self.id)
