"""Django's `flush`, allowed to empty the audit trail.

The append-only triggers refuse DELETE (SQLite) and TRUNCATE (PostgreSQL) of audit rows; wiping the
whole database is the one exception, and this command is the one door to it (imports/audit/guard.py
says how). Django's transactional tests call it between tests, so they keep working.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush

from imports.audit.guard import audit_maintenance


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with audit_maintenance(using=options["database"], reason="manage.py flush"):
            super().handle(**options)
