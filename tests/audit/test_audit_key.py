"""The audit trail against its own database's owner (issue 23, item 11; item 12 is test_audit_guards.py).

- The chain is keyed: whoever rewrites an event and recomputes the hashes after it without the key is found
  (tests/project/test_settings.py: production does not start without the key).
- Checkpoints of the head, signed with the key, find a trail cut short or emptied.
"""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from imports import tasks
from imports.audit.chain import GENESIS, HASHED_FIELDS, event_hash, unkeyed_event_hash
from imports.audit.checkpoints import Checkpoint, checkpoint_sign, checkpoint_take
from imports.audit.guard import (
    AUDIT_TABLE,
    guards_install,
    guards_missing,
)
from imports.audit.keys import audit_key
from imports.audit.records import audit_record
from imports.models import AuditEvent
from imports.operations.audit_checkpoints import audit_checkpoint_write
from imports.phi_logging import PhiRedactingFilter
from localaws.testing import LocalAWSHandle


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


# --- 11. Checkpoints ----------------------------------------------------------------------


def write_checkpoints(tmp_path: Path, *checkpoints: Checkpoint) -> str:
    path = tmp_path / "checkpoints.log"
    path.write_text(
        "2026-12-03 08:00:00 INFO unrelated line\n"
        + "".join(
            f"2026-12-03 08:00:00 INFO imports.operations.audit_checkpoints "
            f"audit-checkpoint {checkpoint.to_json()}\n"
            for checkpoint in checkpoints
        )
    )
    return str(path)


def test_a_trail_that_reaches_its_checkpoints_passes(db: None, tmp_path: Path) -> None:
    record("one")
    first = checkpoint_take()
    record("two")
    second = checkpoint_take()
    assert first is not None
    assert second is not None
    output = verify("--checkpoints", write_checkpoints(tmp_path, first, second))
    assert output.startswith("The audit trail is whole: 2 event(s)")
    assert "it reaches all 2 checkpoint(s)" in output


def test_a_trail_cut_short_fails_naming_the_checkpoint(
    db: None, tmp_path: Path
) -> None:
    events = [record(f"event {i}") for i in range(3)]
    checkpoint = checkpoint_take()
    assert checkpoint is not None
    go_around_the_triggers()
    # The chain left behind is whole: only the checkpoint knows the trail was longer.
    raw(f"DELETE FROM {AUDIT_TABLE} WHERE id = %s", [events[2].pk])
    put_the_triggers_back()
    assert verify().startswith("The audit trail is whole: 2 event(s)")
    with pytest.raises(CommandError) as error:
        verify("--checkpoints", write_checkpoints(tmp_path, checkpoint))
    message = str(error.value)
    assert checkpoint.label() in message
    assert f"names event {events[2].pk}" in message
    assert "the chain is shorter than the checkpoint" in message
    assert error.value.returncode == 1


def test_a_checkpointed_event_whose_hash_changed_fails(
    db: None, tmp_path: Path
) -> None:
    event = record("one")
    real = checkpoint_take()
    assert real is not None
    # A checkpoint signed with the key whose hash the trail no longer has (the trail was rewritten with the
    # key after it was taken, say, or rolled back to a backup and written again).
    other = checkpoint_sign(
        key=audit_key(), event_id=event.pk, events=1, hash="f" * 64, at=real.at
    )
    with pytest.raises(CommandError) as error:
        verify("--checkpoints", write_checkpoints(tmp_path, real, other))
    message = str(error.value)
    assert "no longer agrees with 1 of the 2 checkpoint(s)" in message
    assert f"{other.label()} recorded the hash ffffffffffffffff…" in message


def test_an_emptied_trail_fails_against_its_checkpoint(
    db: None, tmp_path: Path
) -> None:
    record("one")
    checkpoint = checkpoint_take()
    assert checkpoint is not None
    go_around_the_triggers()
    raw(f"DELETE FROM {AUDIT_TABLE}")
    with pytest.raises(CommandError, match="but the trail is empty"):
        verify("--checkpoints", write_checkpoints(tmp_path, checkpoint))


def test_a_forged_checkpoint_is_refused(db: None, tmp_path: Path) -> None:
    event = record("one")
    forged = checkpoint_sign(
        key=b"not-the-dashboard-key-but-long-enough-01234",
        event_id=event.pk,
        events=1,
        hash=event.hash,
        at=event.created_at,
    )
    with pytest.raises(
        CommandError, match="line 2: the checkpoint of .* is not signed"
    ):
        verify("--checkpoints", write_checkpoints(tmp_path, forged))


def test_a_file_without_checkpoints_is_refused(db: None, tmp_path: Path) -> None:
    record("one")
    with pytest.raises(CommandError, match="holds no checkpoint"):
        verify("--checkpoints", write_checkpoints(tmp_path))
    with pytest.raises(CommandError, match="Cannot read"):
        verify("--checkpoints", str(tmp_path / "missing.log"))


def test_the_beat_task_logs_a_signed_checkpoint(
    db: None, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    event = record("one")
    with caplog.at_level(logging.INFO, logger="imports.operations.audit_checkpoints"):
        tasks.audit_checkpoint()
    records = [r for r in caplog.records if "audit-checkpoint" in r.getMessage()]
    assert len(records) == 1
    # The patient-data filter every handler carries leaves the line as it is.
    lines = [records[0].getMessage()]
    assert PhiRedactingFilter().filter(records[0])
    assert records[0].getMessage() == lines[0]
    data = json.loads(lines[0].removeprefix("audit-checkpoint "))
    assert (data["event_id"], data["events"], data["hash"]) == (event.pk, 1, event.hash)
    # What the log holds is what verify_audit reads.
    log = tmp_path / "worker.log"
    log.write_text(
        "2026-12-03 INFO celery.beat Scheduler: Sending due task audit-checkpoint "
        "(imports.audit_checkpoint) {}\n"
        f"2026-12-03 INFO imports.operations.audit_checkpoints {lines[0]}\n"
    )
    assert "reaches all 1 checkpoint(s)" in verify("--checkpoints", str(log))


def test_the_beat_task_writes_nothing_for_an_empty_trail(db: None) -> None:
    assert audit_checkpoint_write() is None


def test_the_beat_task_is_scheduled() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["checkpoint-the-audit-trail"]
    assert entry["task"] == tasks.audit_checkpoint.name == "imports.audit_checkpoint"


def test_checkpoints_go_to_s3_and_verify_reads_them_back(
    db: None, localaws: LocalAWSHandle, settings: Any
) -> None:
    localaws.create_bucket("audit-anchor")
    settings.AUDIT_CHECKPOINT_S3_URI = "s3://audit-anchor/checkpoints"
    events = [record("one")]
    first = audit_checkpoint_write()
    events.append(record("two"))
    second = audit_checkpoint_write()
    assert first is not None
    assert second is not None
    keys = [
        item["Key"]
        for item in localaws.s3_client().list_objects_v2(Bucket="audit-anchor")[
            "Contents"
        ]
    ]
    assert len(keys) == 2
    assert all(key.startswith("checkpoints/") for key in keys)
    assert "reaches all 2 checkpoint(s)" in verify(
        "--checkpoints", "s3://audit-anchor/checkpoints/"
    )
    go_around_the_triggers()
    raw(f"DELETE FROM {AUDIT_TABLE} WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match=f"names event {events[1].pk}"):
        verify("--checkpoints", "s3://audit-anchor/checkpoints/")


# --- 11. Migration 0026 keys the events already there -------------------------------------


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


BEFORE_KEY = [("imports", "0025_task_lease")]


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
    # Backwards, the chain is unkeyed again: as 0025 left it.
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


def test_checkpoints_are_logged_whatever_the_log_level() -> None:
    # DJANGO_LOG_LEVEL=WARNING must not drop the checkpoints the log is meant to keep.
    config: Any = django_settings.LOGGING
    assert config["loggers"]["imports.operations.audit_checkpoints"] == {
        "level": "INFO"
    }
