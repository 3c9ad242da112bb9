"""Field checks for what a peer sends over the wire: the bounds every parser applies before a
value may reach a database column or a policy.

Two rules. Identity fields (a trial id, an attempt, a campaign or worker name) are refused
when they break a bound: :class:`MessageError` names the field, and the message is dropped
(dead-lettered by the scheduler). Payload fields (an error text, metrics, a count) are
cleaned to what the column can hold: NUL characters replaced, text cut to the column's
length, integers outside the column's range and non-finite numbers dropped, nested JSON
bounded in depth and size. Pure functions; thread-safe.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: the longest lease, tell timeout or queued bound a campaign may set (30 days)
MAX_LEASE_SECONDS = 30 * 86400.0
#: PostgreSQL INTEGER
INT32_MAX = 2**31 - 1
#: a trial id: the scheduler's uuid4 text
TRIAL_ID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: a campaign name (the client's rule: app.client.arms.NAME_RE)
CAMPAIGN_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,199}\Z")
#: a worker's name (Celery's ``name@host``; printable, no NUL)
WORKER_RE = re.compile(r"\A[\x20-\x7e]{1,200}\Z")
#: a device class: ``cpu`` or ``cuda-<major>.<minor>``
DEVICE_CLASS_RE = re.compile(r"\A(cpu|cuda-[0-9]{1,2}\.[0-9])\Z")
#: a database identity (a uuid4's text)
DATABASE_ID_RE = re.compile(r"\A[0-9a-f-]{1,36}\Z")
#: nested JSON a result may carry (metrics, outputs)
MAX_JSON_DEPTH = 16
MAX_JSON_BYTES = 256 * 1024


class MessageError(ValueError):
    """A message (or a field that identifies it) is unusable; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def identity(v: Any, pattern: re.Pattern[str], field: str) -> str:
    """``v`` if it is a string matching ``pattern`` in full, else MessageError."""
    if not isinstance(v, str) or pattern.fullmatch(v) is None:
        raise MessageError(field, f"must match {pattern.pattern}, got {_short(v)}")
    return v


def int32(v: Any, field: str, lo: int = 0) -> int:
    """An integer in ``lo..INT32_MAX`` (not a bool), else MessageError."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= INT32_MAX:
        raise MessageError(field, f"must be an integer in {lo}..{INT32_MAX}, got {_short(v)}")
    return v


def clean_int(v: Any, lo: int = 0) -> int | None:
    """An integer in ``lo..INT32_MAX``, or None (dropped)."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= INT32_MAX:
        return None
    return v


def clean_float(v: Any) -> float | None:
    """A finite number, or None (dropped)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond a double's range
        return None
    return f if math.isfinite(f) else None


def clean_text(v: Any, limit: int) -> str | None:
    """Free text for a column of ``limit`` characters: NUL replaced, cut; None stays None."""
    if v is None:
        return None
    return str(v).replace("\x00", "\ufffd")[:limit]


def clean_json(v: Any, field: str) -> Any:
    """A JSON value a JSONB column accepts: strings without NUL, finite numbers (others
    become null), string keys, at most :data:`MAX_JSON_DEPTH` levels. Larger than
    :data:`MAX_JSON_BYTES` once encoded: replaced by ``{"dropped": reason}``."""
    out = _clean(v, 0)
    size = len(json.dumps(out, separators=(",", ":")))
    if size > MAX_JSON_BYTES:
        return {"dropped": f"{field} of {size} bytes over the {MAX_JSON_BYTES}-byte bound"}
    return out


def _clean(v: Any, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        return None
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**63 else None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, str):
        return v.replace("\x00", "\ufffd")
    if isinstance(v, dict):
        return {str(k).replace("\x00", "\ufffd")[:200]: _clean(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x, depth + 1) for x in v]
    return None


def _short(v: Any) -> str:
    return repr(v)[:80]
