"""Each API client belongs to one organisation (tenant).

Rows from before organisations join the ``default`` organisation (created by core 0001); new rows
must name theirs (the column is NOT NULL once backfilled).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def to_default_organization(apps: Any, schema_editor: Any) -> None:
    default = apps.get_model("core", "Organization").objects.get(slug="default")
    apps.get_model("oauth", "ApiClient").objects.update(organization=default)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_organization"),
        ("oauth", "0002_smart_backend_services"),
    ]

    operations = [
        migrations.AddField(
            model_name="apiclient",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="api_clients", to="core.organization"),
        ),
        migrations.RunPython(to_default_organization, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apiclient",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="api_clients", to="core.organization"),
        ),
    ]
