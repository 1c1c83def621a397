from __future__ import annotations

from django.db import migrations

from imports.roles import sync_role_groups


class Migration(migrations.Migration):
    dependencies = [("imports", "0003_scans")]

    # Viewers gain the new view permissions (scans and their index).
    operations = [migrations.RunPython(sync_role_groups, migrations.RunPython.noop)]
