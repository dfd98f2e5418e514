"""Bulk Data export tasks (issue 15), on the maintenance queue: run an export, sweep expired ones."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from cds.fhir.bulk import bulk_export_run, bulk_export_sweep


@shared_task(
    name="fhir.bulk_export_run",
    soft_time_limit=settings.BULK_EXPORT_SOFT_TIME_LIMIT_S,
    time_limit=settings.BULK_EXPORT_SOFT_TIME_LIMIT_S + 60,
)  # type: ignore[misc]
def fhir_bulk_export_run(export_id: str) -> str:
    """Write the export's NDJSON files; return its final status."""
    return bulk_export_run(export_id)


@shared_task(name="fhir.bulk_export_sweep")  # type: ignore[misc]
def fhir_bulk_export_sweep() -> dict[str, int]:
    """Periodic (beat): delete expired exports and their files, fail exports whose worker was lost."""
    return bulk_export_sweep()
