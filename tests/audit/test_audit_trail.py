"""The audit trail is append-only at every layer and tamper-evident: the queryset, the admin, the
database's triggers, the hash chain and `manage.py verify_audit`."""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from imports.audit.chain import GENESIS, HASHED_FIELDS, event_hash
from imports.audit.guard import AUDIT_TABLE, MAINTENANCE_TABLE, guards_missing
from imports.audit.keys import audit_key
from imports.audit.records import audit_record, audit_verify
from imports.models import AppendOnlyError, AuditEvent
from tests.conftest import PASSWORD, wait_for

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL's locks and triggers (CI runs PostgreSQL)",
)


def record(summary: str = "Started a scan of s3://b/p/", **kwargs: Any) -> AuditEvent:
    return audit_record(
        actor=None, action=AuditEvent.Action.SCAN_STARTED, summary=summary, **kwargs
    )


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def disable_update_trigger() -> None:
    """Go around the guard, as someone with the table owner's rights could (rolled back with the test)."""
    if connection.vendor == "postgresql":
        raw(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER USER")
    else:
        raw("DROP TRIGGER imports_auditevent_no_update")
        raw("DROP TRIGGER imports_auditevent_no_delete")


def verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


# --- Append-only: the model and its queryset --------------------------------------------------


def test_the_queryset_refuses_to_update_or_delete(db: None) -> None:
    record()
    events = AuditEvent.objects.all()
    with pytest.raises(AppendOnlyError, match="cannot be updated"):
        events.update(summary="rewritten")
    with pytest.raises(AppendOnlyError, match="cannot be deleted"):
        events.delete()
    with pytest.raises(AppendOnlyError, match="cannot be updated"):
        AuditEvent.objects.bulk_update(list(events), ["summary"])
    with pytest.raises(AppendOnlyError, match="one at a time"):
        AuditEvent.objects.bulk_create([AuditEvent(summary="forged")])
    assert list(AuditEvent.objects.values_list("summary", flat=True)) == [
        "Started a scan of s3://b/p/"
    ]


def test_an_event_refuses_to_be_saved_again_or_deleted(db: None) -> None:
    event = record()
    event.summary = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.get().summary == "Started a scan of s3://b/p/"


# --- Append-only: the database --------------------------------------------------------------


def test_the_append_only_triggers_are_installed(db: None) -> None:
    assert guards_missing(connection) == []


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {AUDIT_TABLE} SET summary = 'rewritten'",
        f"DELETE FROM {AUDIT_TABLE}",
    ],
)
def test_the_database_refuses_raw_updates_and_deletes(db: None, sql: str) -> None:
    event = record()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(sql)
    assert AuditEvent.objects.get().summary == event.summary


def test_the_same_statements_pass_on_other_tables(db: None, alice: User) -> None:
    # The passing case of the rule above: the triggers guard the audit table and nothing else.
    raw("UPDATE auth_user SET first_name = 'Alice' WHERE id = %s", [alice.pk])
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


@postgresql_only
def test_postgresql_refuses_truncate_outside_flush(db: None) -> None:
    record()
    with pytest.raises(IntegrityError, match="TRUNCATE refused"), transaction.atomic():
        raw(f"TRUNCATE {AUDIT_TABLE}")
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_database_and_leaves_the_guard_armed() -> None:
    # Django's transactional tests flush between tests: this is the path they take.
    record()
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
    record()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {MAINTENANCE_TABLE}")
        assert cursor.fetchone() == (0,)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(f"DELETE FROM {AUDIT_TABLE}")
    assert AuditEvent.objects.count() == 1


# --- Append-only: the admin -----------------------------------------------------------------


def test_the_admin_shows_an_event_but_offers_no_change_or_delete(
    client_carol: Client,
) -> None:
    event = record()
    url = f"/admin/imports/auditevent/{event.pk}/change/"
    page = client_carol.get(url)
    assert page.status_code == 200
    content = page.content.decode()
    assert "Started a scan of s3://b/p/" in content
    assert 'name="_save"' not in content
    assert "/delete/" not in content
    assert client_carol.post(url, {"summary": "rewritten"}).status_code == 403
    delete = f"/admin/imports/auditevent/{event.pk}/delete/"
    assert client_carol.get(delete).status_code == 403
    assert client_carol.post(delete, {"post": "yes"}).status_code == 403
    changelist = client_carol.get("/admin/imports/auditevent/").content.decode()
    assert "delete_selected" not in changelist
    bulk = client_carol.post(
        "/admin/imports/auditevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert bulk.status_code == 200  # "No action selected": the action does not exist
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert AuditEvent.objects.get(pk=event.pk).summary == "Started a scan of s3://b/p/"


def test_deleting_a_user_in_the_admin_keeps_their_events_and_is_audited(
    client_carol: Client, bob: User
) -> None:
    Client().post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    bob_id = bob.pk
    response = client_carol.post(f"/admin/auth/user/{bob_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=bob_id).exists()
    signed_in = AuditEvent.objects.get(
        action=AuditEvent.Action.SIGNED_IN, actor_id=bob_id
    )
    assert signed_in.actor_username == "bob"
    deleted = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_DELETED)
    assert (deleted.actor_username, deleted.summary) == ("carol", "Deleted user “bob”")
    assert audit_verify().broken is None
    # The event of a deleted account still opens in the admin.
    assert (
        client_carol.get(
            f"/admin/imports/auditevent/{signed_in.pk}/change/"
        ).status_code
        == 200
    )


# --- Tamper-evident: the chain and verify_audit ----------------------------------------------


def test_each_event_is_chained_to_the_one_before(db: None) -> None:
    first, second = record("one"), record("two", details={"n": 1.0, "s": "a\x00b"})
    assert first.previous_hash == GENESIS
    assert second.previous_hash == first.hash
    stored = AuditEvent.objects.values(*HASHED_FIELDS, "previous_hash", "hash").get(
        pk=second.pk
    )
    # What was hashed is what was stored, as read back: the float as an integer, no NUL.
    assert stored["details"] == {"n": 1, "s": "ab"}
    assert (
        event_hash(key=audit_key(), previous_hash=first.hash, fields=stored)
        == stored["hash"]
    )


def test_verify_audit_reports_a_whole_chain(db: None) -> None:
    # An empty trail is a failure now (tests/audit/test_audit_guards.py).
    for i in range(3):
        record(f"event {i}")
    last = AuditEvent.objects.order_by("id").last()
    assert last is not None
    output = verify()
    assert output.startswith("The audit trail is whole: 3 event(s)")
    assert last.hash in output


def test_verify_audit_finds_an_edited_event(db: None) -> None:
    events = [record(f"event {i}") for i in range(3)]
    disable_update_trigger()
    raw(
        f"UPDATE {AUDIT_TABLE} SET summary = 'nothing to see' WHERE id = %s",
        [events[1].pk],
    )
    with pytest.raises(CommandError) as error:
        verify()
    message = str(error.value)
    assert message.startswith(f"The audit trail is broken at event {events[1].pk} (")
    assert "its content no longer matches its hash" in message
    assert "The 1 event(s) before it are intact." in message
    assert error.value.returncode == 1


def test_verify_audit_finds_an_event_rewritten_with_a_fresh_hash(db: None) -> None:
    events = [record(f"event {i}") for i in range(3)]
    disable_update_trigger()
    fields = AuditEvent.objects.values(*HASHED_FIELDS).get(pk=events[1].pk)
    fields["summary"] = "nothing to see"
    forged = event_hash(key=audit_key(), previous_hash=events[0].hash, fields=fields)
    raw(
        f"UPDATE {AUDIT_TABLE} SET summary = %s, hash = %s WHERE id = %s",
        ["nothing to see", forged, events[1].pk],
    )
    with pytest.raises(CommandError) as error:
        verify()
    message = str(error.value)
    assert f"broken at event {events[2].pk} (" in message
    assert f"but follows event {events[1].pk}, whose hash is {forged[:16]}" in message


def test_verify_audit_finds_a_removed_event(db: None) -> None:
    events = [record(f"event {i}") for i in range(3)]
    disable_update_trigger()
    raw(f"DELETE FROM {AUDIT_TABLE} WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError) as error:
        verify()
    assert f"broken at event {events[2].pk} (" in str(error.value)
    assert f"follows event {events[0].pk}" in str(error.value)


def test_verify_audit_finds_the_first_events_removed(db: None) -> None:
    events = [record(f"event {i}") for i in range(2)]
    disable_update_trigger()
    raw(f"DELETE FROM {AUDIT_TABLE} WHERE id = %s", [events[0].pk])
    with pytest.raises(CommandError, match="but follows the start of the trail"):
        verify()


def test_verify_audit_reports_disabled_triggers_on_a_whole_chain(db: None) -> None:
    record()
    disable_update_trigger()
    with pytest.raises(CommandError, match="whole, but the append-only triggers"):
        verify()


# --- Concurrent writers (PostgreSQL: SQLite has one writer at a time by design) ---------------


def _in_thread(target: Any, results: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target())
        except BaseException as error:  # handed to the test thread, which fails on it
            results.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _waiting_for_the_chain_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_waits_for_the_one_in_progress_and_follows_it() -> None:
    first_written, release = threading.Event(), threading.Event()

    def slow_writer() -> AuditEvent:
        # An event written inside a longer transaction (as the draft services do).
        with transaction.atomic():
            event = record("first")
            first_written.set()
            release.wait()
        return event

    results_a: list[Any] = []
    results_b: list[Any] = []
    a = _in_thread(slow_writer, results_a)
    first_written.wait()
    b = _in_thread(lambda: record("second"), results_b)
    try:
        # Without the lock, the second writer would read the old head and fork the chain now.
        wait_for(
            _waiting_for_the_chain_lock, timeout=20, what="the second writer to wait"
        )
    finally:
        release.set()
        a.join()
        b.join()
    first, second = results_a[0], results_b[0]
    assert isinstance(first, AuditEvent), first
    assert isinstance(second, AuditEvent), second
    assert second.previous_hash == first.hash
    assert audit_verify().broken is None


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_chain() -> None:
    start = threading.Barrier(4)

    def writer(n: int) -> int:
        start.wait()
        for i in range(15):
            record(f"writer {n} event {i}")
        return n

    results: list[Any] = []
    threads = [_in_thread(lambda n=n: writer(n), results) for n in range(4)]
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1, 2, 3]
    previous = list(AuditEvent.objects.values_list("previous_hash", flat=True))
    assert len(previous) == 60
    assert len(set(previous)) == 60  # no two events follow the same one: no fork
    report = audit_verify()
    assert (report.events, report.broken) == (60, None)


# --- The migration chains the events already there -----------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_the_events_already_there() -> None:
    executor = MigrationExecutor(connection)
    ours = next(
        key
        for key in executor.loader.graph.nodes
        if key[0] == "imports" and key[1].endswith("_audit_trail")
    )
    before = next(
        parent
        for parent in executor.loader.graph.node_map[ours].parents
        if parent.key[0] == "imports"
    ).key
    latest = executor.loader.graph.leaf_nodes("imports")
    executor.migrate([before])
    try:
        old_apps = executor.loader.project_state([before]).apps
        OldEvent = old_apps.get_model("imports", "AuditEvent")
        for i in range(3):
            OldEvent.objects.create(
                actor_username="system",
                action="scan.started",
                summary=f"old event {i}",
                details={"size": 1e16},
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    report = audit_verify()
    assert (report.events, report.broken, report.missing_triggers) == (3, None, [])
    assert AuditEvent.objects.order_by("id").first().previous_hash == GENESIS  # type: ignore[union-attr]
    # New events continue the migrated chain.
    record("new")
    assert audit_verify().events == 4
    assert audit_verify().broken is None
