"""The audit trail becomes append-only and tamper-evident.

1. Each event records the request's IP address and user agent, and its place in a hash chain.
2. The actor link loses its ON DELETE SET NULL and its database constraint: deleting a user must not
   UPDATE audit rows (the username is copied into each event anyway).
3. The events already there are chained, in id order, before
4. the triggers that refuse UPDATE and DELETE are installed (imports/audit/guard.py).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from imports.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    canonical_json_value,
    unkeyed_event_hash,
)
from imports.audit.guard import guards_install, guards_remove


def chain_existing_events(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("imports", "AuditEvent")
    previous = GENESIS
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
        fields["details"] = canonical_json_value(fields["details"])
        # The scheme of its time; 0026 checks this chain and hashes it again with the key.
        digest = unkeyed_event_hash(previous_hash=previous, fields=fields)
        # The historical model's plain manager: these rows are not guarded yet.
        AuditEvent.objects.filter(pk=event.pk).update(
            details=fields["details"], previous_hash=previous, hash=digest
        )
        previous = digest


def install_guards(apps: Any, schema_editor: Any) -> None:
    guards_install(schema_editor.connection)


def remove_guards(apps: Any, schema_editor: Any) -> None:
    guards_remove(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0016_audit_metadata_written"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="ip",
            field=models.CharField(
                blank=True, max_length=45, verbose_name="IP address"
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="user_agent",
            field=models.CharField(blank=True, max_length=512),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="previous_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(
                db_index=True, default=django.utils.timezone.now, editable=False
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("datastore.created", "Datastore created"),
                    ("datastore.changed", "Datastore changed"),
                    ("datastore.deleted", "Datastore deleted"),
                    ("datastore.checked", "Connection checked"),
                    ("scan.started", "Scan started"),
                    ("scan.cancelled", "Scan cancelled"),
                    ("phi.revealed", "Patient details revealed"),
                    ("account.added", "Account or role added"),
                    ("account.changed", "Account or role changed"),
                    ("account.deleted", "Account or role deleted"),
                    ("user.signed_in", "Signed in"),
                    ("user.signed_out", "Signed out"),
                    ("user.sign_in_failed", "Sign-in failed"),
                    ("draft.created", "Import draft created"),
                    ("draft.changed", "Import draft changed"),
                    ("draft.deleted", "Import draft deleted"),
                    ("draft.confirmed", "Import draft confirmed"),
                    ("data.exported", "Data exported"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "base_manager_name": "objects",
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.RunPython(install_guards, remove_guards),
    ]
