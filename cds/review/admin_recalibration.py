"""Admin of per-site recalibrations (issue 19): read-only, approved by a quality auditor with an action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.dateparse import parse_date

from cds.core.admin import ReadOnlyAdmin
from cds.core.exceptions import ApplicationError
from cds.review.models import SiteRecalibration
from cds.review.recalibration import approve_recalibration


def parse_day(text: str) -> datetime | None:
    """Return the start of day ``text`` (YYYY-MM-DD) in UTC; None when it is not a real date."""
    try:
        parsed = parse_date(text)
    except ValueError:
        return None
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC) if parsed else None


@admin.register(SiteRecalibration)
class SiteRecalibrationAdmin(ReadOnlyAdmin):
    """Fitted artefacts with their figures; drafts are approved here or with approve_site_recalibration."""

    list_display = ("pk", "site", "combiner_version", "version", "status", "n", "n_abnormal", "ece_before",
                    "ece_after", "created_at", "approved_by", "approved_at", "retired_at")  # fmt: skip
    list_filter = ("status", "site")
    ordering = ("site", "-version")
    actions = ["approve"]

    @admin.action(description="Approve (serve it for its site; retires the site's previous one)",
                  permissions=["approve"])  # fmt: skip
    def approve(self, request: HttpRequest, queryset: QuerySet[SiteRecalibration]) -> None:
        for artefact in queryset:
            try:
                approve_recalibration(recalibration=artefact, user=request.user)  # auditlog middleware: actor
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"approved {artefact.site} v{artefact.version}")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("review.approve_siterecalibration")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("review.view_siterecalibration")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("review.view_siterecalibration")
