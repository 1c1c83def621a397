"""The audit table cannot be emptied, even by its owner's TRUNCATE, outside the tests (issue 23, item 12).

The maintenance bypass that lets `flush` empty the table exists under test settings only, and an empty
trail fails `verify_audit`.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from imports.audit.guard import (
    AUDIT_TABLE,
    MAINTENANCE_TABLE,
    guards_install,
    guards_weakened,
)
from imports.audit.records import audit_record
from imports.models import AuditEvent


def record(summary: str) -> AuditEvent:
    return audit_record(
        actor=None, action=AuditEvent.Action.SCAN_STARTED, summary=summary
    )


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


# --- Emptying the table ---------------------------------------------------------------


def test_an_empty_trail_fails_verify(db: None) -> None:
    with pytest.raises(CommandError, match="The audit trail is empty") as error:
        verify()
    assert error.value.returncode == 1


def _production_guards(settings: Any) -> None:
    """The triggers as a real dashboard's migration installs them (DDL rolled back with the test)."""
    settings.AUDIT_MAINTENANCE_BYPASS = False
    guards_install(connection)


def test_outside_the_tests_there_is_no_maintenance_table(
    db: None, settings: Any
) -> None:
    assert MAINTENANCE_TABLE in connection.introspection.table_names()
    _production_guards(settings)
    assert MAINTENANCE_TABLE not in connection.introspection.table_names()
    assert guards_weakened(connection) == []
    record("one")
    assert verify().startswith("The audit trail is whole: 1 event(s)")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL has TRUNCATE")
def test_truncate_with_a_maintenance_row_is_refused_outside_the_tests(
    db: None, settings: Any
) -> None:
    record("one")
    _production_guards(settings)
    # The attack of issue 23: recreate the table the bypass used to consult, mark it, truncate.
    raw(f"CREATE TABLE {MAINTENANCE_TABLE} (reason varchar(200) NOT NULL)")
    raw(f"INSERT INTO {MAINTENANCE_TABLE} (reason) VALUES ('me')")
    with pytest.raises(IntegrityError, match="TRUNCATE refused"), transaction.atomic():
        raw(f"TRUNCATE {AUDIT_TABLE}")
    assert AuditEvent.objects.count() == 1


def test_delete_with_a_maintenance_row_is_refused_outside_the_tests(
    db: None, settings: Any
) -> None:
    record("one")
    _production_guards(settings)
    raw(f"CREATE TABLE {MAINTENANCE_TABLE} (reason varchar(200) NOT NULL)")
    raw(f"INSERT INTO {MAINTENANCE_TABLE} (reason) VALUES ('me')")
    with pytest.raises(IntegrityError, match="DELETE refused"), transaction.atomic():
        raw(f"DELETE FROM {AUDIT_TABLE}")
    assert AuditEvent.objects.count() == 1


def test_under_test_settings_the_maintenance_row_lets_the_table_be_emptied(
    db: None,
) -> None:
    # The passing case: the bypass the tests' flush relies on.
    record("one")
    raw(f"INSERT INTO {MAINTENANCE_TABLE} (reason) VALUES ('test')")
    raw(
        f"TRUNCATE {AUDIT_TABLE}"
        if connection.vendor == "postgresql"
        else f"DELETE FROM {AUDIT_TABLE}"
    )
    assert AuditEvent.objects.count() == 0
    with pytest.raises(CommandError, match="The audit trail is empty"):
        verify()


def test_verify_reports_a_bypass_found_outside_the_tests(
    db: None, settings: Any
) -> None:
    record("one")
    # The test database's triggers were installed with the bypass: as a database migrated before 0026 was.
    settings.AUDIT_MAINTENANCE_BYPASS = False
    problems = guards_weakened(connection)
    assert f"the table {MAINTENANCE_TABLE} exists" in problems
    assert any("lets rows go" in problem for problem in problems)
    with pytest.raises(CommandError, match="outside the tests nothing may empty"):
        verify()


def test_flush_cannot_empty_the_trail_outside_the_tests(
    db: None, settings: Any
) -> None:
    # The passing case is test_audit_trail's test_flush_still_empties_the_database_and_leaves_the_guard_armed.
    record("one")
    _production_guards(settings)
    with pytest.raises(CommandError, match="couldn't be flushed") as error:
        call_command("flush", interactive=False, verbosity=0)
    assert "append-only" in str(error.value.__cause__)
    assert AuditEvent.objects.count() == 1
