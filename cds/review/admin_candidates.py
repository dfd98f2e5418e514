"""Admin of model candidates and promotion decisions (issue 19): read-only, for quality auditors.

Candidates are registered, put in shadow, retired and promoted only by the management commands
(``register_model_candidate``, ``promote_model``), which check the pre-registered criteria; these
pages let the quality team see what runs in shadow and every decision with its figures.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cds.core.admin import ReadOnlyAdmin
from cds.review.models import ModelCandidate, PromotionDecision


class _AuditorReadOnly(ReadOnlyAdmin):
    """Visible to whoever has the model's view permission (quality auditors); nobody edits here."""

    view_permission = ""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(self.view_permission)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.view_permission)


@admin.register(ModelCandidate)
class ModelCandidateAdmin(_AuditorReadOnly):
    """Registered candidates: their pre-registered criteria, Triton versions and state (shadow, promoted...)."""

    view_permission = "review.view_modelcandidate"
    list_display = (
        "model_name",
        "model_version",
        "status",
        "detector_version",
        "foundation_version",
        "min_signed",
        "created_at",
    )
    list_filter = ("status", "model_name")
    ordering = ("model_name", "model_version")


@admin.register(PromotionDecision)
class PromotionDecisionAdmin(_AuditorReadOnly):
    """Every promotion and refusal, with the candidate's and the serving version's figures."""

    view_permission = "review.view_promotiondecision"
    list_display = ("candidate", "promoted", "serving_version", "decided_by", "created_at")
    list_filter = ("promoted",)
