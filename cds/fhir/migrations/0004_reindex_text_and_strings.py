"""Backfill the search rows issue 15 added (code:text, Patient name/family/given, Device device-name).

Current versions only (the index describes them alone); the rows come from the same function that
indexes new writes, so an old resource and a new one are searchable alike.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_NEW_NAMES = ("code:text", "name", "family", "given", "device-name")


def reindex(apps: Any, schema_editor: Any) -> None:
    from cds.fhir.indexing import search_entries

    stored = apps.get_model("fhir", "StoredResource")
    entry = apps.get_model("fhir", "SearchIndexEntry")
    types = ("Patient", "Observation", "DiagnosticReport", "Task", "Device")
    for resource in stored.objects.filter(is_current=True, resource_type__in=types).iterator(chunk_size=500):
        if not isinstance(resource.content, dict) or not resource.content.get("id"):
            continue  # not a resource the index could describe (only hand-made rows lack an id)
        rows = [r for r in search_entries(resource.resource_type, resource.content) if r["name"] in _NEW_NAMES]
        entry.objects.bulk_create(entry(resource=resource, resource_type=resource.resource_type, **r) for r in rows)


def unindex(apps: Any, schema_editor: Any) -> None:
    apps.get_model("fhir", "SearchIndexEntry").objects.filter(name__in=_NEW_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [("fhir", "0003_organization")]

    operations = [migrations.RunPython(reindex, unindex)]
