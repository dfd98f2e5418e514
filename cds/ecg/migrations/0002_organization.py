"""Patients and ECG recordings carry their resource's organisation (tenant).

Rows from before organisations join the ``default`` organisation (created by core 0001); new rows
must name theirs (the column is NOT NULL once backfilled).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def to_default_organization(apps: Any, schema_editor: Any) -> None:
    default = apps.get_model("core", "Organization").objects.get(slug="default")
    model = apps.get_model("ecg", "Patient")
    # Copy the resource's organisation (the fhir migration has given every resource one).
    model.objects.update(organization_id=models.Subquery(
        apps.get_model("fhir", "StoredResource").objects.filter(pk=models.OuterRef("resource_id")).values("organization_id")[:1]
    ))
    model.objects.filter(organization__isnull=True).update(organization=default)
    model = apps.get_model("ecg", "EcgRecording")
    # Copy the resource's organisation (the fhir migration has given every resource one).
    model.objects.update(organization_id=models.Subquery(
        apps.get_model("fhir", "StoredResource").objects.filter(pk=models.OuterRef("resource_id")).values("organization_id")[:1]
    ))
    model.objects.filter(organization__isnull=True).update(organization=default)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_organization"),
        ("fhir", "0003_organization"),
        ("ecg", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
        migrations.AddField(
            model_name="ecgrecording",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
        migrations.RunPython(to_default_organization, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="patient",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
        migrations.AlterField(
            model_name="ecgrecording",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="core.organization"),
        ),
    ]
