"""Read-only admin views of patients and ECG recordings (the review page arrives with issue 6)."""

from __future__ import annotations

from django.contrib import admin

from cds.core.admin import ReadOnlyAdmin
from cds.ecg.models import EcgRecording, Patient


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
