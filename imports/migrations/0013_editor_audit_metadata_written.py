# The audit trail records metadata files written in the browser (imports.editor).

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0012_reread_json_metadata"),
    ]

    operations = [
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
                    ("metadata.written", "Metadata file written"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
    ]
