"""A draft is confirmed once: `confirmed_at`, filled for drafts that already made a job."""

from __future__ import annotations

from django.db import migrations, models
from django.db.models import Min, OuterRef, Subquery


def mark_drafts_with_jobs_confirmed(apps, schema_editor):
    ImportDraft = apps.get_model("imports", "ImportDraft")
    ImportJob = apps.get_model("imports", "ImportJob")
    first_job = (
        ImportJob.objects.filter(draft=OuterRef("pk"))
        .values("draft")
        .annotate(first=Min("created_at"))
        .values("first")
    )
    ImportDraft.objects.filter(jobs__isnull=False).update(
        confirmed_at=Subquery(first_job[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0018_audit_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="importdraft",
            name="confirmed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(
            mark_drafts_with_jobs_confirmed, migrations.RunPython.noop, elidable=True
        ),
    ]
