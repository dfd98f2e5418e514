"""Read-only admin views of patients and ECG recordings (the review page arrives with issue 6)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cds.ecg.models import EcgRecording, Patient


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical source data is changed only through the FHIR API, never edited in place."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ("logical_id", "gender", "birth_date", "created_at")
    search_fields = ("logical_id",)


@admin.register(EcgRecording)
class EcgRecordingAdmin(ReadOnlyAdmin):
    list_display = ("logical_id", "patient", "effective_at", "sample_rate_hz", "n_samples", "sex", "created_at")
    list_filter = ("sample_rate_hz", "sex")
    search_fields = ("logical_id", "patient__logical_id")
    exclude = ("samples",)
    list_select_related = ("patient",)
