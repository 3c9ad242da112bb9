"""The askers' notices: an external decision as its asker reads it from a ``NOTIFY``
(``app.client.asked``), packed into as few payloads as fit."""

from __future__ import annotations

import json
from typing import Any


def asked_notice(trial: dict[str, Any]) -> str:
    """One external decision as its asker reads it (in a NOTIFY payload, see
    :func:`packed_notices`): the decision itself, so that the ask needs no read after it
    (``app.client.asked``)."""
    return json.dumps(
        [
            trial["instance_id"],
            trial["uuid"],
            trial["arm_index"],
            trial["propensity"],
            trial["reason"],
            trial["policy_version"],
            trial["attempt"],
            trial["budget"],
            trial["created_at"].isoformat(),
        ]
    )


#: PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more
MAX_NOTICE_BYTES = 7900


def packed_notices(notices: list[str]) -> list[str]:
    """``notices`` (each a JSON array, ASCII) grouped into as few NOTIFY payloads as fit:
    each a JSON array of them. A burst's askers read one or two notices, not one each."""
    out: list[str] = []
    group: list[str] = []
    size = 2
    for n in notices:
        if group and size + len(n) + 1 > MAX_NOTICE_BYTES:
            out.append("[" + ",".join(group) + "]")
            group, size = [], 2
        group.append(n)
        size += len(n) + 1
    if group:
        out.append("[" + ",".join(group) + "]")
    return out
