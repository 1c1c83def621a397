"""JSON metadata files read before the scan kept their parsed document are read once more.

The composer validates and previews from the document the scan keeps (ObjectHeader.json_document), and the
checker's messages no longer quote attribute values. Rows written before either have no document and may quote
a patient name, so they stop being reused: the next scan of their prefix reads each file again into a row of its
own, while the scans that recorded them keep them as they were.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def forward(apps: Any, schema_editor: Any) -> None:
    ObjectHeader = apps.get_model("imports", "ObjectHeader")
    ObjectHeader.objects.filter(kind="json", json_document__isnull=True).update(
        reusable=False
    )


class Migration(migrations.Migration):
    dependencies = [("imports", "0011_audit_draft_actions")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
