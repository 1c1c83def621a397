"""The audit trail's hash chain: pure functions, no Django, so the migration and the checker agree.

Each event's hash is HMAC-SHA256, under the audit key (settings.AUDIT_KEY, from DJANGO_AUDIT_KEY, kept
outside the database), over a canonical JSON of its recorded fields plus the previous event's hash.
Changing any field of any event, removing an event or inserting one in the middle changes a hash that
a later event (or the recomputation) no longer matches; and since the hash is keyed, whoever can write
the table but does not hold the key cannot recompute the hashes after an edit.

`unkeyed_event_hash` is the scheme before the key (plain SHA-256 over the same JSON): migration 0026
checks the chain with it once, then re-hashes every event with the key (it says why).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# The previous hash of the very first event.
GENESIS = "0" * 64

# What an event's hash covers: everything it records except its own id and hashes. The id is left
# out on purpose: the chain, not the sequence, fixes the order (and ids may jump after a rollback).
HASHED_FIELDS = (
    "created_at",
    "actor_id",
    "actor_username",
    "action",
    "target_type",
    "target_id",
    "summary",
    "details",
    "ip",
    "user_agent",
)
# Every recorded column, in the order the export, the admin and the checker show them: the id, what is hashed,
# then the chain's two links.
RECORDED_FIELDS = ("id", *HASHED_FIELDS, "previous_hash", "hash")


def canonical_json_value(value: Any) -> Any:
    """`value` as it reads back from any database's JSON column.

    PostgreSQL's jsonb keeps numbers as decimals, so a float such as 1e16 reads back as the integer
    10000000000000000: integral floats are therefore kept as integers. NUL characters are dropped
    because jsonb refuses them. `audit_record` stores this form, so what is stored is what is hashed.
    """
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)  # JSON has no NaN or Infinity
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {
            str(key).replace("\x00", ""): canonical_json_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [canonical_json_value(item) for item in value]
    # Dates, UUIDs, Decimals: recorded as their text, as DjangoJSONEncoder would.
    return str(value)


def canonical_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_payload(*, previous_hash: str, fields: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash covers: its recorded `fields` and the hash of the event before it."""
    payload = {name: fields[name] for name in HASHED_FIELDS}
    payload["created_at"] = canonical_time(fields["created_at"])
    payload["details"] = canonical_json_value(fields["details"])
    payload["previous_hash"] = previous_hash
    text = json.dumps(
        payload,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return text.encode()


def event_hash(*, key: bytes, previous_hash: str, fields: Mapping[str, Any]) -> str:
    """The keyed hash of an event whose recorded `fields` follow the event hashed `previous_hash`."""
    payload = canonical_payload(previous_hash=previous_hash, fields=fields)
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def unkeyed_event_hash(*, previous_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash as it was before the key (migrations 0017 to 0024): anyone can recompute it."""
    payload = canonical_payload(previous_hash=previous_hash, fields=fields)
    return hashlib.sha256(payload).hexdigest()
