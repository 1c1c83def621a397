"""The database's half of the append-only rule: triggers that refuse UPDATE and DELETE of audit rows.

PostgreSQL: a row trigger refuses UPDATE and DELETE; a statement trigger refuses TRUNCATE.
SQLite: triggers refuse UPDATE and DELETE (SQLite has no TRUNCATE).

One sanctioned exception, for wiping a whole database: `manage.py flush`, which Django's
transactional tests also call between tests. Inside its own transaction, flush (the override in
imports/management/commands/flush.py) puts a row into `imports_audit_maintenance`; while that row
exists, TRUNCATE (PostgreSQL) and DELETE (SQLite) of audit rows pass. The table is not a Django
model, so flush never empties it, and the row is never visible to another connection: it is
removed before the transaction commits. UPDATE is never allowed.

These triggers stop the application, a stray script or a careless `DELETE` in a SQL console.
They do not stop the table's owner, who may drop or disable them: that is what the hash chain and
`manage.py verify_audit` are for.

On SQLite, a migration that alters the audit table rebuilds it and so drops its triggers; such a
migration must call `guards_install` again. `verify_audit` reports missing triggers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

AUDIT_TABLE = "imports_auditevent"
MAINTENANCE_TABLE = "imports_audit_maintenance"
# pg_advisory_xact_lock key that serialises writers of the hash chain ("auditlog" as 8 bytes).
CHAIN_LOCK_KEY = int.from_bytes(b"auditlog", "big")

MESSAGE = "Audit events are append-only"

POSTGRESQL_TRIGGERS = {
    "imports_auditevent_no_update_delete": f"""
        CREATE TRIGGER imports_auditevent_no_update_delete
        BEFORE UPDATE OR DELETE ON {AUDIT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION imports_auditevent_refuse()""",
    "imports_auditevent_no_truncate": f"""
        CREATE TRIGGER imports_auditevent_no_truncate
        BEFORE TRUNCATE ON {AUDIT_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION imports_auditevent_refuse()""",
}
POSTGRESQL_FUNCTION = f"""
    CREATE OR REPLACE FUNCTION imports_auditevent_refuse() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' AND EXISTS (SELECT 1 FROM {MAINTENANCE_TABLE}) THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$"""

SQLITE_TRIGGERS = {
    "imports_auditevent_no_update": f"""
        CREATE TRIGGER imports_auditevent_no_update
        BEFORE UPDATE ON {AUDIT_TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END""",
    "imports_auditevent_no_delete": f"""
        CREATE TRIGGER imports_auditevent_no_delete
        BEFORE DELETE ON {AUDIT_TABLE}
        WHEN NOT EXISTS (SELECT 1 FROM {MAINTENANCE_TABLE})
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END""",
}


def expected_triggers(connection: BaseDatabaseWrapper) -> list[str]:
    if connection.vendor == "postgresql":
        return sorted(POSTGRESQL_TRIGGERS)
    if connection.vendor == "sqlite":
        return sorted(SQLITE_TRIGGERS)
    return []


def guards_install(connection: BaseDatabaseWrapper) -> None:
    """Create the maintenance table and the triggers (idempotent)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {MAINTENANCE_TABLE} (reason varchar(200) NOT NULL)"
        )
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION)
            for name, sql in POSTGRESQL_TRIGGERS.items():
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {AUDIT_TABLE}")
                cursor.execute(sql)
        elif connection.vendor == "sqlite":
            for name, sql in SQLITE_TRIGGERS.items():
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                cursor.execute(sql)


def guards_remove(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for name in POSTGRESQL_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {AUDIT_TABLE}")
            cursor.execute("DROP FUNCTION IF EXISTS imports_auditevent_refuse()")
        elif connection.vendor == "sqlite":
            for name in SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        cursor.execute(f"DROP TABLE IF EXISTS {MAINTENANCE_TABLE}")


def guards_missing(connection: BaseDatabaseWrapper) -> list[str]:
    """The append-only triggers that are absent (or, on PostgreSQL, disabled)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
                "AND NOT tgisinternal AND tgenabled <> 'D'",
                [AUDIT_TABLE],
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [AUDIT_TABLE],
            )
        else:
            return []
        present = {row[0] for row in cursor.fetchall()}
    return [name for name in expected_triggers(connection) if name not in present]


def chain_lock(connection: BaseDatabaseWrapper) -> None:
    """Hold, until the current transaction ends, the right to append to the hash chain.

    Without it two writers could both read the same last hash and fork the chain. PostgreSQL: a
    transaction-scoped advisory lock, released at commit, after which the next writer reads the new
    last event. SQLite has one writer at a time, but a transaction that reads before it writes
    holds only a read lock; a write that changes nothing takes the write lock first, so the last
    hash is read by the one writer.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        elif connection.vendor == "sqlite":
            cursor.execute(
                f"UPDATE {MAINTENANCE_TABLE} SET reason = reason WHERE 0 = 1"
            )


@contextmanager
def audit_maintenance(*, using: str, reason: str) -> Iterator[None]:
    """Let the enclosed statements wipe the audit table (see the module docstring): flush only."""
    connection = connections[using]
    with transaction.atomic(using=using):
        present = MAINTENANCE_TABLE in connection.introspection.table_names()
        if present:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {MAINTENANCE_TABLE} (reason) VALUES (%s)", [reason]
                )
        yield
        if present:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {MAINTENANCE_TABLE}")
