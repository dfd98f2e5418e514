"""Read-only admin views of analysis jobs and predictions (audit trail of what the models said)."""

from __future__ import annotations

from django.contrib import admin

from cds.analysis.models import AnalysisJob, Prediction
from cds.core.admin import ReadOnlyAdmin


@admin.register(AnalysisJob)
class AnalysisJobAdmin(ReadOnlyAdmin):
    list_display = ("pk", "recording", "status", "attempts", "model_name", "model_version", "created_at", "finished_at")
    list_filter = ("status", "model_name", "model_version")
    list_select_related = ("recording",)


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = (
        "pk", "recording", "model_name", "model_version", "score", "threshold", "flagged", "verdict", "urgency",
        "created_at",
    )  # fmt: skip
    list_filter = ("model_name", "model_version", "flagged", "verdict", "urgency")
    exclude = ("anomaly_map",)
    list_select_related = ("recording",)
