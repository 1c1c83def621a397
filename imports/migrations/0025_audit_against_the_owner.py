"""The maintenance bypass that lets `flush` empty the audit table becomes test-only.

The triggers are installed again (imports/audit/guard.py): without the bypass, and without its table,
unless the settings are the tests'. Before, a row inserted into `imports_audit_maintenance` let anyone
who could write that table TRUNCATE (PostgreSQL) or DELETE (SQLite) the whole trail.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from imports.audit.guard import guards_install


def install_guards(apps: Any, schema_editor: Any) -> None:
    guards_install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0024_audit_job_adopted"),
    ]

    operations = [
        migrations.RunPython(install_guards, migrations.RunPython.noop),
    ]
