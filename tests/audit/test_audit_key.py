"""The audit trail against its own database's owner (issue 23, item 11; item 12 is test_audit_guards.py).

- The chain is keyed: whoever rewrites an event and recomputes the hashes after it without the key is found
  (tests/project/test_settings.py: production does not start without the key).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from imports.audit.chain import GENESIS, HASHED_FIELDS, event_hash, unkeyed_event_hash
from imports.audit.guard import (
    AUDIT_TABLE,
    guards_install,
    guards_missing,
)
from imports.audit.keys import audit_key
from imports.audit.records import audit_record
from imports.models import AuditEvent


def record(summary: str) -> AuditEvent:
    return audit_record(
        actor=None, action=AuditEvent.Action.SCAN_STARTED, summary=summary
    )


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def go_around_the_triggers() -> None:
    """What the table's owner can do (rolled back with the test)."""
    if connection.vendor == "postgresql":
        raw(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER USER")
    else:
        raw("DROP TRIGGER imports_auditevent_no_update")
        raw("DROP TRIGGER imports_auditevent_no_delete")


def put_the_triggers_back() -> None:
    """And cover the tracks: the triggers as they were."""
    if connection.vendor == "postgresql":
        raw(f"ALTER TABLE {AUDIT_TABLE} ENABLE TRIGGER USER")
    else:
        guards_install(connection)


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def rewrite_from(events: list[AuditEvent], index: int, hasher: Any) -> None:
    """Edit events[index] (not the first) and recompute its hash and every later one's with `hasher`, as a forger would."""
    raw(
        f"UPDATE {AUDIT_TABLE} SET summary = 'nothing to see' WHERE id = %s",
        [events[index].pk],
    )
    previous = events[index - 1].hash
    for event in events[index:]:
        fields = AuditEvent.objects.values(*HASHED_FIELDS).get(pk=event.pk)
        digest = hasher(previous_hash=previous, fields=fields)
        raw(
            f"UPDATE {AUDIT_TABLE} SET previous_hash = %s, hash = %s WHERE id = %s",
            [previous, digest, event.pk],
        )
        previous = digest


# --- 11. The key --------------------------------------------------------------------------


def test_an_edit_recomputed_without_the_key_fails_verify(db: None) -> None:
    events = [record(f"event {i}") for i in range(5)]
    go_around_the_triggers()
    # The attack of issue 23: edit one event, recompute the last four with the public hash function.
    rewrite_from(events, 1, unkeyed_event_hash)
    with pytest.raises(CommandError) as error:
        verify()
    message = str(error.value)
    assert f"broken at event {events[1].pk} (" in message
    assert "recomputed without the audit key" in message
    assert error.value.returncode == 1


def test_an_edit_recomputed_with_another_key_fails_verify(db: None) -> None:
    events = [record(f"event {i}") for i in range(3)]
    go_around_the_triggers()

    def guessed(**kwargs: Any) -> str:
        return event_hash(key=b"a-guessed-key-of-enough-length-0123456789", **kwargs)

    rewrite_from(events, 1, guessed)
    with pytest.raises(CommandError, match=f"broken at event {events[1].pk} "):
        verify()


def test_only_the_key_recomputes_a_chain_that_verifies(db: None) -> None:
    # The passing case of the two above: the key, and nothing else, is what a forger lacks.
    events = [record(f"event {i}") for i in range(3)]
    go_around_the_triggers()

    def keyed(**kwargs: Any) -> str:
        return event_hash(key=audit_key(), **kwargs)

    rewrite_from(events, 1, keyed)
    put_the_triggers_back()
    assert verify().startswith("The audit trail is whole: 3 event(s)")


# --- 11. Migration 0025 keys the events already there -------------------------------------


def _migrate_to(target: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def _unkeyed_events(old_apps: Any, summaries: list[str]) -> list[Any]:
    OldEvent = old_apps.get_model("imports", "AuditEvent")
    previous, made = GENESIS, []
    for summary in summaries:
        event = OldEvent(
            actor_username="system", action="scan.started", summary=summary, details={}
        )
        event.previous_hash = previous
        event.hash = unkeyed_event_hash(
            previous_hash=previous,
            fields={name: getattr(event, name) for name in HASHED_FIELDS},
        )
        event.save()
        made.append(event)
        previous = event.hash
    return made


BEFORE_KEY = [("imports", "0024_audit_job_adopted")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keys_an_unkeyed_chain_and_back() -> None:
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("imports")
    try:
        made = _unkeyed_events(_migrate_to(BEFORE_KEY), ["old 0", "old 1", "old 2"])
    finally:
        _migrate_to(latest)
    events = list(AuditEvent.objects.order_by("id"))
    assert [event.summary for event in events] == ["old 0", "old 1", "old 2"]
    assert events[-1].hash != made[-1].hash  # hashed again, with the key
    assert verify().startswith("The audit trail is whole: 3 event(s)")
    # New events continue the keyed chain; the triggers are back, without the bypass outside the tests.
    record("new")
    assert verify().startswith("The audit trail is whole: 4 event(s)")
    assert guards_missing(connection) == []
    # Backwards, the chain is unkeyed again: as 0024 left it.
    _migrate_to(BEFORE_KEY)
    try:
        rows = list(AuditEvent.objects.order_by("id").values(*HASHED_FIELDS, "hash"))
        assert rows[0]["hash"] == made[0].hash
    finally:
        _migrate_to(latest)
    assert verify().startswith("The audit trail is whole: 4 event(s)")


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_to_key_a_broken_chain() -> None:
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("imports")
    try:
        made = _unkeyed_events(_migrate_to(BEFORE_KEY), ["old 0", "old 1"])
        go_around_the_triggers()
        raw(f"UPDATE {AUDIT_TABLE} SET summary = 'edited' WHERE id = %s", [made[0].pk])
        with pytest.raises(RuntimeError, match=f"broken at event {made[0].pk}"):
            _migrate_to(latest)
        # Nothing was changed: the edit is still there for verify_audit of the old release to find.
        assert AuditEvent.objects.get(pk=made[1].pk).hash == made[1].hash
    finally:
        call_command("flush", interactive=False, verbosity=0)
        _migrate_to(latest)
