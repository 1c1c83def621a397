"""The database's half of the append-only rule: triggers that refuse UPDATE, DELETE and TRUNCATE of audit rows.

PostgreSQL: a row trigger refuses UPDATE and DELETE; a statement trigger refuses TRUNCATE.
SQLite: triggers refuse UPDATE and DELETE (SQLite has no TRUNCATE).

Under test settings only (settings.AUDIT_MAINTENANCE_BYPASS, which the environment cannot turn on), one
exception: `manage.py flush`, which Django's transactional tests call between tests. Inside its own
transaction, flush (imports/management/commands/flush.py) puts a row into `imports_audit_maintenance`;
while that row exists, TRUNCATE (PostgreSQL) and DELETE (SQLite) of audit rows pass. Everywhere else
the triggers are installed without that clause and the table does not exist: a row inserted by hand
into a table of that name opens nothing, and `flush` cannot empty the trail of a real dashboard.
`guards_weakened` reports a bypass found where there should be none.

These triggers stop the application, a stray script or a careless `DELETE` in a SQL console.
They do not stop the table's owner, who may drop or disable them: that is what the keyed hash chain,
its checkpoints and `manage.py verify_audit` are for.

On SQLite, a migration that alters the audit table rebuilds it and so drops its triggers; such a
migration must call `guards_install` again. `verify_audit` reports missing triggers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
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
_POSTGRESQL_BYPASS = f"""
        IF TG_OP = 'TRUNCATE' AND EXISTS (SELECT 1 FROM {MAINTENANCE_TABLE}) THEN
            RETURN NULL;
        END IF;"""


def postgresql_function(*, bypass: bool) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION imports_auditevent_refuse() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN{_POSTGRESQL_BYPASS if bypass else ""}
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$"""


def sqlite_triggers(*, bypass: bool) -> dict[str, str]:
    unless = f"WHEN NOT EXISTS (SELECT 1 FROM {MAINTENANCE_TABLE})" if bypass else ""
    return {
        "imports_auditevent_no_update": f"""
            CREATE TRIGGER imports_auditevent_no_update
            BEFORE UPDATE ON {AUDIT_TABLE}
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END""",
        "imports_auditevent_no_delete": f"""
            CREATE TRIGGER imports_auditevent_no_delete
            BEFORE DELETE ON {AUDIT_TABLE}
            {unless}
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END""",
    }


SQLITE_TRIGGERS = sqlite_triggers(bypass=False)


def bypass_allowed() -> bool:
    """Whether the triggers may let `flush` through: under test settings only."""
    return bool(getattr(settings, "AUDIT_MAINTENANCE_BYPASS", False))


def expected_triggers(connection: BaseDatabaseWrapper) -> list[str]:
    if connection.vendor == "postgresql":
        return sorted(POSTGRESQL_TRIGGERS)
    if connection.vendor == "sqlite":
        return sorted(SQLITE_TRIGGERS)
    return []


def guards_install(connection: BaseDatabaseWrapper) -> None:
    """Create the triggers (idempotent), with the maintenance table and its bypass under test settings only."""
    bypass = bypass_allowed()
    with connection.cursor() as cursor:
        if bypass:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {MAINTENANCE_TABLE} (reason varchar(200) NOT NULL)"
            )
        if connection.vendor == "postgresql":
            cursor.execute(postgresql_function(bypass=bypass))
            for name, sql in POSTGRESQL_TRIGGERS.items():
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {AUDIT_TABLE}")
                cursor.execute(sql)
        elif connection.vendor == "sqlite":
            for name, sql in sqlite_triggers(bypass=bypass).items():
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                cursor.execute(sql)
        if not bypass:
            # Installed by migration 0017 on every database before the bypass became test-only.
            cursor.execute(f"DROP TABLE IF EXISTS {MAINTENANCE_TABLE}")


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


def guards_weakened(connection: BaseDatabaseWrapper) -> list[str]:
    """What would let audit rows be emptied where only tests may: the maintenance table or a trigger consulting it."""
    if bypass_allowed():
        return []
    problems = []
    if MAINTENANCE_TABLE in connection.introspection.table_names():
        problems.append(f"the table {MAINTENANCE_TABLE} exists")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                "WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal "
                "AND p.prosrc ILIKE %s",
                [AUDIT_TABLE, f"%{MAINTENANCE_TABLE}%"],
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s "
                "AND sql LIKE %s",
                [AUDIT_TABLE, f"%{MAINTENANCE_TABLE}%"],
            )
        else:
            return problems
        problems.extend(
            f"the trigger {row[0]} lets rows go while {MAINTENANCE_TABLE} has a row"
            for row in cursor.fetchall()
        )
    return problems


def chain_lock(connection: BaseDatabaseWrapper) -> None:
    """Hold, until the current transaction ends, the right to append to the hash chain.

    Without it two writers could both read the same last hash and fork the chain. PostgreSQL: a
    transaction-scoped advisory lock, released at commit, after which the next writer reads the new
    last event. SQLite has one writer at a time, but a transaction that reads before it writes
    holds only a read lock; a write that changes nothing (no row, so no row trigger fires) takes the
    write lock first, so the last hash is read by the one writer.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        elif connection.vendor == "sqlite":
            cursor.execute(f"UPDATE {AUDIT_TABLE} SET hash = hash WHERE 0 = 1")


@contextmanager
def audit_maintenance(*, using: str, reason: str) -> Iterator[None]:
    """Let the enclosed statements wipe the audit table (see the module docstring): flush, under test settings only.

    Elsewhere the table is absent, nothing is marked, and the triggers refuse as they always do.
    """
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
