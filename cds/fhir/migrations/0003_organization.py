"""Every stored FHIR resource belongs to an organisation (tenant).

Rows from before organisations join the ``default`` organisation (created by core 0001); new rows
must name theirs (the column is NOT NULL once backfilled).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def to_default_organization(apps: Any, schema_editor: Any) -> None:
    default = apps.get_model("core", "Organization").objects.get(slug="default")
    apps.get_model("fhir", "StoredResource").objects.update(organization=default)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_organization"),
        ("fhir", "0002_lz4_toast_compression"),
    ]

    operations = [
        migrations.AddField(
            model_name="storedresource",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
        migrations.RunPython(to_default_organization, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="storedresource",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
    ]
