from __future__ import annotations

from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "cds.fhir"
    label = "fhir"

    def ready(self) -> None:
        # Register the bulk export tasks in the web process too (cds.core.dispatch enqueues by name).
        from cds.fhir import tasks  # noqa: F401, PLC0415 ready()
