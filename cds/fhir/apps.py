from __future__ import annotations

from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "cds.fhir"
    label = "fhir"
