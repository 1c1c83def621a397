"""The audit chain is keyed (HMAC-SHA256 with DJANGO_AUDIT_KEY), and flush's bypass becomes test-only.

1. The events already there are checked against the unkeyed chain (SHA-256, migrations 0017 to 0025);
   the migration stops, changing nothing, if that chain is broken: re-hashing would launder the break.
2. Every event is then hashed again, in id order, with the key. Why re-hash rather than keep the old
   hashes under a per-event scheme marker: a marker sits in the same rows as the hashes, so whoever can
   edit rows could mark the events they rewrite "unkeyed" and recompute them with plain SHA-256, which
   needs no secret. After this migration no event verifies without the key. The heads before and after
   are logged, so a hash noted from an earlier `verify_audit` can still be compared with the old head.
3. The triggers are installed again (imports/audit/guard.py): without the maintenance bypass, and
   without its table, unless the settings are the tests'.

Backwards: the keyed chain is checked, then hashed again without the key.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import migrations

from imports.audit.chain import GENESIS, HASHED_FIELDS, event_hash, unkeyed_event_hash
from imports.audit.guard import guards_install, guards_remove

logger = logging.getLogger("imports.audit")

BATCH = 2000


def _events(AuditEvent: Any) -> Any:
    last = 0
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last).order_by("id")[:BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1].id


def _rehash(apps: Any, schema_editor: Any, *, keyed: bool) -> None:
    AuditEvent = apps.get_model("imports", "AuditEvent")
    key = settings.AUDIT_KEY.encode()

    def old(previous: str, fields: dict[str, Any]) -> str:
        if keyed:
            return unkeyed_event_hash(previous_hash=previous, fields=fields)
        return event_hash(key=key, previous_hash=previous, fields=fields)

    def new(previous: str, fields: dict[str, Any]) -> str:
        if keyed:
            return event_hash(key=key, previous_hash=previous, fields=fields)
        return unkeyed_event_hash(previous_hash=previous, fields=fields)

    previous = GENESIS
    for batch in _events(AuditEvent):
        for event in batch:
            fields = {name: getattr(event, name) for name in HASHED_FIELDS}
            if event.previous_hash != previous or old(previous, fields) != event.hash:
                raise RuntimeError(
                    f"The audit trail is broken at event {event.id}: it does not fit the "
                    f"{'unkeyed' if keyed else 'keyed'} chain. Nothing was changed. Find out "
                    "why with `manage.py verify_audit` on the release before this one."
                )
            previous = event.hash
    old_head = previous

    connection = schema_editor.connection
    # The historical model's plain manager, with the triggers away for the length of this transaction.
    guards_remove(connection)
    previous = GENESIS
    for batch in _events(AuditEvent):
        for event in batch:
            fields = {name: getattr(event, name) for name in HASHED_FIELDS}
            event.previous_hash = previous
            event.hash = new(previous, fields)
            previous = event.hash
        AuditEvent.objects.bulk_update(batch, ["previous_hash", "hash"])
    guards_install(connection)
    if old_head != GENESIS:
        logger.warning(
            "Audit trail hashed again %s the key: the head was %s and is now %s",
            "with" if keyed else "without",
            old_head,
            previous,
        )


def key_the_chain(apps: Any, schema_editor: Any) -> None:
    _rehash(apps, schema_editor, keyed=True)


def unkey_the_chain(apps: Any, schema_editor: Any) -> None:
    _rehash(apps, schema_editor, keyed=False)


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0025_task_lease"),
    ]

    operations = [
        migrations.RunPython(key_the_chain, unkey_the_chain),
    ]
