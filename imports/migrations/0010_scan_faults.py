"""Transient S3 failures are no longer results (issue 12).

Named for the scanfaults branch; the lead renumbers it at merge. It depends on 0008, the last
migration on main when the branch started, so that `migrate` finds one leaf.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

# What the scanner wrote before this migration for an S3 error while reading (reader.TRANSIENT_PREFIX).
LEGACY_TRANSIENT_PREFIX = "S3: "


def forward(apps: Any, schema_editor: Any) -> None:
    ObjectHeader = apps.get_model("imports", "ObjectHeader")
    Scan = apps.get_model("imports", "Scan")
    # Earlier scans recorded S3 failures as results. They stay as those scans saw them, but are no
    # longer reused: a later scan reads the object again into a row of its own.
    ObjectHeader.objects.filter(
        status="unreadable", error__startswith=LEGACY_TRANSIENT_PREFIX
    ).update(reusable=False)
    # A completed scan listed the whole prefix.
    Scan.objects.filter(status="completed").update(
        listing_finished_at=models.F("finished_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0009_drafts"),
    ]

    operations = [
        migrations.CreateModel(
            name="ScanUnread",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("key", models.CharField(max_length=1024)),
                ("etag", models.CharField(max_length=128)),
                ("size", models.PositiveBigIntegerField()),
                ("error", models.TextField(blank=True)),
                ("failures", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name="objectheader",
            name="unique_object_version",
        ),
        migrations.AddField(
            model_name="objectheader",
            name="reusable",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="scan",
            name="listing_finished_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="scan",
            name="objects_pending",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="scan",
            name="paused_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="scan",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                    ("incomplete", "Incomplete"),
                ],
                db_index=True,
                default="queued",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="objectheader",
            constraint=models.UniqueConstraint(
                condition=models.Q(("reusable", True)),
                fields=("bucket", "key", "etag"),
                name="unique_object_version",
            ),
        ),
        migrations.AddField(
            model_name="scanunread",
            name="scan",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="unread",
                to="imports.scan",
            ),
        ),
        migrations.AddConstraint(
            model_name="scanunread",
            constraint=models.UniqueConstraint(
                fields=("scan", "key"), name="unique_scan_unread"
            ),
        ),
        # Last: PostgreSQL refuses an ALTER TABLE after row changes in the same transaction.
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
