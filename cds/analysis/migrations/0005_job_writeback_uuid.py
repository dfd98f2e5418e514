"""Each analysis job gets a write-back UUID, generated once and stored (issue 13, write-back identity).

Existing jobs get a fresh random UUID each. Their result resources, already stored (and perhaps in
the EHR), keep their old ``urn:ecg-cds:analysis|job-<pk>-...`` identifiers, and signing addresses
the stored resources' identifiers, so their signatures still find them. Only new jobs get UUIDs.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import migrations, models


def fill(apps: Any, schema_editor: Any) -> None:
    job = apps.get_model("analysis", "AnalysisJob")
    for pk in job.objects.values_list("pk", flat=True).iterator():
        job.objects.filter(pk=pk).update(writeback_uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("analysis", "0004_interpretation")]

    operations = [
        migrations.AddField(
            model_name="analysisjob", name="writeback_uuid", field=models.UUIDField(null=True, editable=False)
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="analysisjob",
            name="writeback_uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
