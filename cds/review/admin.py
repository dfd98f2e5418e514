"""Clinician worklists, the review page, the prediction audit and the quality dashboard (Django admin).

Views stay thin: check access, call one service or selector, render. The review page replaces the
change form (reviews are changed only through the services, never with a model form).
"""

from __future__ import annotations

import csv
import logging
from datetime import UTC, datetime
from typing import Any

from auditlog.signals import accessed
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.dateparse import parse_date
from django.utils.html import format_html, format_html_join

from cds.analysis.interpretation import clinical_report_of, evidence_text, top_findings, verdict_words
from cds.analysis.models import Prediction
from cds.core.admin import ReadOnlyAdmin
from cds.core.exceptions import ApplicationError
from cds.review import admin_candidates, admin_recalibration, services  # noqa: F401 admin_* register their admins
from cds.review.audit import audit_csv_export
from cds.review.drift import acknowledge_alarms
from cds.review.errors import ReviewPermissionDenied
from cds.review.feedback import feedback_summary, feedback_table
from cds.review.metrics import quality_metrics
from cds.review.models import CareTeam, CareTeamSource, DriftAlarm, QualityPrediction, ReannotationReview, Review
from cds.review.plots import ecg_paper_svg, rhythm_strip_svg, roc_svg, score_drift_svg
from cds.review.quality import quality_report, report_csv, report_csv_rows
from cds.review.recalibration_report import recalibration_summary
from cds.review.scp import SCP_STATEMENTS
from cds.review.selectors import (
    WORKLIST_ORDER,
    anomaly_map,
    interpretation_for,
    interpretation_view,
    previous_recordings,
    quality_predictions,
    review_access,
    review_for_page,
    review_revisions,
    reviews_visible_to,
    user_sees_all_sources,
    user_sources,
    worklist,
    worklist_counts,
)
from inference.results import DETECTOR_NAME, INTERPRETATION_NAME

logger = logging.getLogger(__name__)

# Issue 19: open drift alarms on the admin index (the banner is also on the worklists and dashboard).
admin.site.index_template = "admin/review/index.html"


class ReviewerFilter(admin.SimpleListFilter):
    title = "reviewer"
    parameter_name = "reviewer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        users = get_user_model().objects.filter(claimed_reviews__isnull=False).distinct().order_by("username")
        return [(str(u.pk), u.get_username()) for u in users]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(claimed_by_id=self.value())
        return queryset


class SourceFilter(admin.SimpleListFilter):
    title = "ward / source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        sources: Any
        if user_sees_all_sources(request.user):
            sources = (
                reviews_visible_to(user=request.user).values_list("recording__received_from", flat=True).distinct()
            )
        else:  # a clinician's own care-team sources: a small table, not a scan of the reviews
            sources = user_sources(request.user).values_list("source", flat=True)
        return [(s, s or "(unknown)") for s in sorted(set(sources))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is not None:
            return queryset.filter(recording__received_from=self.value())
        return queryset


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """The flagged-ECG worklist; its change page is the review page."""

    queue = Review.Queue.FLAGGED
    priority_label = "score ÷ operating point"
    list_display = (
        "open_link", "status", "urgency", "verdict", "findings", "ranking_value", "score", "finding_date",
        "patient", "source", "model_version", "claimed_by", "created_at",
    )  # fmt: skip
    # No date_hierarchy: its two aggregate queries cost ~55 ms at 10,000 items; the date filter stays.
    list_filter = ("status", "prediction__model_version", SourceFilter, ReviewerFilter, "created_at")
    list_per_page = 50
    show_full_result_count = False  # the count is shown per status instead (one grouped query)
    search_fields = ("recording__logical_id", "recording__patient__logical_id")
    change_list_template = "admin/review/worklist.html"
    actions = ["claim_selected", "unclaim_selected"]

    @admin.action(description="Claim the selected ECGs", permissions=["change"])
    def claim_selected(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        self._bulk(request, queryset, services.review_claim, "claimed")

    @admin.action(description="Unclaim the selected ECGs", permissions=["change"])
    def unclaim_selected(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        self._bulk(request, queryset, services.review_unclaim, "unclaimed")

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Review], service: Any, done: str) -> None:
        changed, refused = 0, []
        for review in queryset:
            try:
                service(review=review, user=request.user)
                changed += 1
            except ApplicationError as exc:
                refused.append(f"review {review.pk}: {exc.message}")
        messages.success(request, f"{changed} {done}")
        if refused:
            messages.warning(request, "; ".join(refused))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Review]:
        # Care-team scoping happens here, so list, page and actions all see the same rows.
        return worklist(user=request.user, queue=self.queue, queryset=super().get_queryset(request))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return list(WORKLIST_ORDER)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="ECG")
    def open_link(self, obj: Review) -> str:
        url = reverse(f"admin:review_{self.model._meta.model_name}_change", args=[obj.pk])
        return format_html('<a href="{}">Review {}</a>', url, obj.pk)

    @admin.display(description="urgency", ordering="-urgent")
    def urgency(self, obj: Review) -> str:
        return "urgent" if obj.urgent else "routine"

    @admin.display(description="AI verdict")
    def verdict(self, obj: Review) -> str:
        interpretation = interpretation_for(obj)
        if interpretation is None:  # analysed before the interpretation existed: the detector's call
            return "flagged by the detector" if obj.prediction.flagged else "not flagged by the detector"
        return verdict_words(interpretation.verdict)

    @admin.display(description="findings")
    def findings(self, obj: Review) -> str:
        interpretation = interpretation_for(obj)
        if interpretation is None:
            return "—"
        shown = top_findings(clinical_report_of(interpretation))
        if not shown:
            return "—"
        # The evidence rides along as a tooltip: the row stays one line, the numbers are one hover away.
        return format_html_join(
            ", ", '<span title="{}">{}</span>', ((evidence_text(f) or f.source, f.text) for f in shown)
        )

    @admin.display(description="score ÷ operating point", ordering="priority")
    def ranking_value(self, obj: Review) -> str:
        return f"{obj.priority:.2f}"

    @admin.display(description="score", ordering="prediction__score")
    def score(self, obj: Review) -> str:
        return f"{obj.prediction.score or 0:.2f} / {obj.prediction.threshold or 0:.2f}"

    @admin.display(description="ECG date", ordering="recording__effective_at")
    def finding_date(self, obj: Review) -> str:
        return obj.recording.effective_at.date().isoformat() if obj.recording.effective_at else "undated"

    @admin.display(description="patient", ordering="recording__patient_id")
    def patient(self, obj: Review) -> str:
        recording = obj.recording
        who = recording.patient.logical_id[:8] if recording.patient else "unknown"
        return f"{who} · {_age(recording)} · {recording.sex or '?'}"

    @admin.display(description="source", ordering="recording__received_from")
    def source(self, obj: Review) -> str:
        return obj.recording.received_from

    @admin.display(description="model", ordering="prediction__model_version")
    def model_version(self, obj: Review) -> str:
        return obj.prediction.model_version

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"status_counts": worklist_counts(user=request.user, queue=self.queue), "queue": self.queue}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def get_urls(self) -> list[URLPattern]:
        name = f"review_{self.model._meta.model_name}"
        return [
            path("<int:pk>/act/<str:action>/", self.admin_site.admin_view(self.action_view), name=f"{name}_act"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # A non-numeric id names no review: the same answer as a review the user may not see.
        review = (
            review_for_page(pk=int(object_id), user=request.user)
            if object_id.isascii() and object_id.isdigit()
            else None
        )
        if review is None or review.queue != self.queue:
            raise PermissionDenied  # not 404: do not reveal that an ECG outside the care team exists
        accessed.send(Review, instance=review)  # audit trail: who viewed which ECG's review
        return TemplateResponse(request, "admin/review/review_page.html", self._page_context(request, review))

    def _page_context(self, request: HttpRequest, review: Review) -> dict[str, Any]:
        recording, prediction = review.recording, review.prediction
        current = review.current
        intervals = current.intervals if current else prediction.intervals
        svg = ecg_paper_svg(
            signal_uv=recording.waveform(),
            leads=recording.leads,
            sample_rate_hz=recording.sample_rate_hz,
            anomaly_map=anomaly_map(prediction),
            map_leads=prediction.map_leads,
            map_rate_hz=prediction.map_rate_hz,
            intervals=intervals,
            title=f"ECG {recording.logical_id[:8]} · {recording.effective_at or ''}",
            layout="3x4" if request.GET.get("layout") == "3x4" else "12x1",
        )
        user = request.user
        access = review_access(review=review, user=user)
        return {
            **self.admin_site.each_context(request),
            "title": f"Review {review.pk}",
            "opts": self.model._meta,
            "review": review,
            "recording": recording,
            "prediction": prediction,
            "current": current,
            "age": _age(recording),
            "ecg_svg": svg,
            "intervals": intervals,
            "leads": recording.leads,
            "revisions": review_revisions(review=review),
            "interpretation": interpretation_view(review),
            "priority_label": self.priority_label,
            "previous": [
                (p, rhythm_strip_svg(signal_uv=p.waveform(), leads=p.leads, sample_rate_hz=p.sample_rate_hz))
                for p in previous_recordings(review=review, user=user)
            ],
            "scp_statements": SCP_STATEMENTS.values(),
            "selected_labels": set(current.scp_labels if current else []),
            "can_change": access.can_change,
            "can_claim": access.can_claim,
            "is_claimer": access.is_claimer,
            "can_edit": access.can_edit,
            "can_sign": access.can_sign,
            "signature_meaning": services.SIGNATURE_MEANING,
            "act_url": f"admin:review_{self.model._meta.model_name}_act",
            "worklist_url": reverse(f"admin:review_{self.model._meta.model_name}_changelist"),
        }

    def action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        review = get_object_or_404(Review, pk=pk)
        user, data = request.user, request.POST
        page = reverse(f"admin:review_{self.model._meta.model_name}_change", args=[pk])
        handlers: dict[str, Any] = {
            "claim": lambda: services.review_claim(review=review, user=user),
            "unclaim": lambda: services.review_unclaim(review=review, user=user),
            "accept": lambda: services.review_accept(review=review, user=user),
            "reject": lambda: services.review_reject(review=review, user=user, reason=data.get("reason", "")),
            "intervals": lambda: services.review_correct_intervals(
                review=review, user=user, intervals=_intervals_from_form(data)
            ),
            "labels": lambda: services.review_label(review=review, user=user, scp_labels=data.getlist("scp_labels")),
            "report": lambda: services.review_edit_report(
                review=review, user=user, report_text=data.get("report_text", "")
            ),
            "sign": lambda: services.review_sign(
                review=review, user=user, password=data.get("password", ""), report_text=data.get("report_text")
            ),
        }
        if action not in handlers:
            return HttpResponse(status=404)
        try:
            handlers[action]()
        except ReviewPermissionDenied as exc:
            raise PermissionDenied(exc.message) from exc
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(page)
        messages.success(request, f"{action}: done")
        if action == "unclaim":
            return HttpResponseRedirect(reverse(f"admin:review_{self.model._meta.model_name}_changelist"))
        return HttpResponseRedirect(page)


@admin.register(ReannotationReview)
class ReannotationReviewAdmin(ReviewAdmin):
    """Not-flagged ECGs the foundation model's active learning ranks worth a second look."""

    queue = Review.Queue.REANNOTATION
    priority_label = "re-annotation value"

    # Active learning's value of a clinician's label: not clinical urgency, so not called priority.
    @admin.display(description="re-annotation value", ordering="priority")
    def ranking_value(self, obj: Review) -> str:
        return f"{obj.priority:.2f}"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("review.view_review")


def _age(recording: Any) -> str:
    low, high = recording.age_min_years, recording.age_max_years
    if low is None:
        return "age ?"
    return f"{low:.0f} y" if high is None or int(high) == int(low) else f"{low:.0f}–{high:.0f} y"


def _intervals_from_form(data: Any) -> list[dict[str, Any]]:
    """Rows ``lead_<n>``, ``start_<n>``, ``end_<n>`` (``delete_<n>`` drops one; ``new`` adds one)."""
    rows = sorted({key.split("_", 1)[1] for key in data if key.startswith("lead_")})
    intervals = []
    for row in rows:
        if data.get(f"delete_{row}") or not data.get(f"lead_{row}"):
            continue
        if row == "new" and not data.get("start_new"):
            continue
        interval: dict[str, Any] = {
            "lead": data.get(f"lead_{row}"),
            "start_ms": data.get(f"start_{row}"),
            "end_ms": data.get(f"end_{row}"),
        }
        if data.get(f"score_{row}"):
            interval["score"] = data.get(f"score_{row}")
        intervals.append(interval)
    return intervals


class CareTeamSourceInline(admin.TabularInline):
    model = CareTeamSource
    extra = 1


@admin.register(CareTeam)
class CareTeamAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "created_at")
    list_filter = ("organization",)
    filter_horizontal = ("members",)
    inlines = [CareTeamSourceInline]


CSV_COLUMNS = (
    "prediction_id", "created_at", "ecg", "patient", "source", "model_name", "model_version",
    "server_model_version", "score", "threshold", "flagged", "waveform_sha256", "leads", "sample_rate_hz",
    "timings_ms", "job_triton_model_version", "review_status", "verdict", "reason", "reviewer",
    "time_to_review_h", "ai_verdict", "urgency", "findings", "reannotation_value",
)  # fmt: skip


@admin.register(QualityPrediction)
class QualityPredictionAdmin(ReadOnlyAdmin):
    """Every prediction with provenance, versions, timings and the reviewer's verdict; CSV export."""

    list_display = (
        "pk", "created_at", "model_name", "model_version", "server_model_version", "score", "threshold", "flagged",
        "ai_verdict", "urgency_display", "reannotation_value", "source", "reviewer_verdict", "time_to_review",
    )  # fmt: skip
    list_filter = (
        "model_name",
        "model_version",
        "flagged",
        "recording__received_from",
        "reviews__status",
        "created_at",
    )
    list_per_page = 100
    show_full_result_count = False
    exclude = ("anomaly_map",)
    change_list_template = "admin/review/quality_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return quality_predictions()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("review.view_quality")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return True

    @admin.display(description="source")
    def source(self, obj: Any) -> str:
        return str(obj.recording.received_from)

    @admin.display(description="urgency", ordering="urgency")
    def urgency_display(self, obj: Any) -> str:
        return obj.urgency or "—"

    @staticmethod
    def _review(obj: Any) -> Review | None:
        return _judged_review(obj)

    @admin.display(description="AI verdict", ordering="verdict")
    def ai_verdict(self, obj: Any) -> str:
        return verdict_words(obj.verdict) if obj.verdict else "—"

    @admin.display(description="re-annotation value", ordering="review_priority")
    def reannotation_value(self, obj: Any) -> str:
        return "—" if obj.review_priority is None else f"{obj.review_priority:.2f}"

    # Not ``verdict``: a model field of that name (the AI's) would shadow the method in list_display.
    @admin.display(description="reviewer verdict")
    def reviewer_verdict(self, obj: Any) -> str:
        review = self._review(obj)
        if review is None:
            return "—"
        verdict = review.current.verdict if review.current else ""
        return f"{review.status}{' · ' + verdict if verdict else ''}"

    @admin.display(description="time to review")
    def time_to_review(self, obj: Any) -> str:
        hours = _time_to_review_h(self._review(obj))
        return "—" if hours is None else f"{hours:.1f} h"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("export.csv", view(self.export_csv), name="review_qualityprediction_export"),
            path("dashboard/", view(self.dashboard_view), name="review_qualityprediction_dashboard"),
            path("quality-report.csv", view(self.quality_report_csv), name="review_qualityprediction_report"),
            *super().get_urls(),
        ]

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        """Stream the filtered list (same filters as the page) as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).order_by("pk")
        audit_csv_export(user=request.user, name="prediction-audit.csv", query=request.GET.urlencode())

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines() -> Any:
            yield writer.writerow(CSV_COLUMNS)
            for obj in rows.iterator(chunk_size=500):
                yield writer.writerow(_csv_row(obj))

        response = StreamingHttpResponse(lines(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="prediction-audit.csv"'
        return response

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Metrics per model version and period, with the drift and ROC plots."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        model_version = request.GET.get("model_version") or None
        since, until = _day(request.GET.get("since")), _day(request.GET.get("until"))
        invalid = [name for name in ("since", "until") if request.GET.get(name) and _day(request.GET.get(name)) is None]
        for name in invalid:
            messages.warning(request, f"{name}={request.GET[name]!r} is not a date (YYYY-MM-DD); it was ignored")
        period = request.GET.get("period", "week")
        period = period if period in {"day", "week", "month"} else "week"
        metrics = quality_metrics(model_version=model_version, since=since, until=until, period=period)
        # The dashboard's metrics are the detector's (AUROC of its score): offer only its versions.
        detector_rows = Prediction.objects.filter(model_name=DETECTOR_NAME)
        versions = detector_rows.order_by().values_list("model_version", flat=True).distinct()
        context = {
            **self.admin_site.each_context(request),
            "title": "Quality dashboard",
            "opts": self.model._meta,
            "metrics": metrics,
            "versions": sorted(set(versions)),
            "selected": {
                "model_version": model_version or "",
                "since": request.GET.get("since", ""),
                "until": request.GET.get("until", ""),
                "period": period,
            },  # fmt: skip
            "drift_svg": score_drift_svg(
                periods=metrics.drift_periods, scores=metrics.drift_scores, threshold=metrics.threshold
            ),
            "roc_svg": roc_svg(fpr=metrics.roc[0], tpr=metrics.roc[1], auroc=metrics.auroc),
            # Issue 19: the served verdict (combined probability) by subgroup, from signed verdicts.
            "served_rows": report_csv_rows(quality_report(since=since))[1:],
            "recalibration": recalibration_summary(),  # per site: approved artefact, drafts awaiting approval
            # Issue 15: what clinicians did with the CDS Hooks cards (feedback_section.html).
            "card_feedback": feedback_table(feedback_summary(since=since, model_version=model_version)),
        }
        return TemplateResponse(request, "admin/review/dashboard.html", context)

    def quality_report_csv(self, request: HttpRequest) -> HttpResponse:
        """The served verdict's figures per model version and subgroup (``quality_report``) as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        since = _day(request.GET.get("since"))
        audit_csv_export(user=request.user, name="quality-report.csv", query=request.GET.urlencode())
        response = HttpResponse(report_csv(quality_report(since=since)), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="quality-report.csv"'
        return response


@admin.register(DriftAlarm)
class DriftAlarmAdmin(ReadOnlyAdmin):
    """Drift alarms (issue 19, docs/quality.md): read-only, acknowledged by a quality auditor once acted on."""

    list_display = ("day", "site", "feature", "test", "statistic", "p_value", "n_reference", "n_day", "details",
                    "acknowledged_at", "acknowledged_by")  # fmt: skip
    list_filter = ("feature", "site", ("acknowledged_at", admin.EmptyFieldListFilter))
    ordering = ("-day", "site", "feature")
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge (acted on): clears the banner", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[DriftAlarm]) -> None:
        messages.success(request, f"{acknowledge_alarms(alarms=queryset, user=request.user)} acknowledged")

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("review.view_quality")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("review.view_quality")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("review.view_quality")


def _day(text: str | None) -> datetime | None:
    """Return the start of day ``text`` (YYYY-MM-DD) in UTC; None when absent or not a real date (2024-02-30)."""
    try:
        parsed = parse_date(text) if text else None
    except ValueError:  # well-formed but impossible: parse_date raises rather than returning None
        return None
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC) if parsed else None


def _time_to_review_h(review: Review | None) -> float | None:
    if review is None or review.decided_at is None:
        return None
    return (review.decided_at - review.created_at).total_seconds() / 3600.0


def _judged_review(obj: Any) -> Review | None:
    """Return the review that judged this prediction's call: the detector's row, or the interpretation's.

    The review hangs on the detector's row; it judges the one verdict, which is the interpretation's
    when one ran. Foundation-model rows get none, so no verdict is counted twice per model.
    """
    reviews = list(obj.reviews.all())  # prefetched
    if reviews:
        return reviews[0]
    if obj.model_name != INTERPRETATION_NAME:
        return None
    try:
        return obj.job.review  # select_related
    except Review.DoesNotExist:
        return None


def _findings_text(obj: Any) -> str:
    if obj.model_name != INTERPRETATION_NAME:
        return ""
    return "; ".join(f"{f.code}: {evidence_text(f)}" for f in clinical_report_of(obj).findings)


def _csv_row(obj: Any) -> list[Any]:
    review = _judged_review(obj)
    current = review.current if review else None
    provenance = obj.input_provenance or {}
    hours = _time_to_review_h(review)
    return [
        obj.pk, obj.created_at.isoformat(), f"Observation/{obj.recording.logical_id}",
        obj.recording.patient.logical_id if obj.recording.patient else "", obj.recording.received_from,
        obj.model_name, obj.model_version, obj.server_model_version, obj.score, obj.threshold, obj.flagged,
        provenance.get("waveform_sha256", ""), " ".join(provenance.get("leads_used") or provenance.get("leads") or []),
        provenance.get("sample_rate_hz", ""), obj.timings, obj.job.triton_model_version,
        review.status if review else "", current.verdict if current else "", current.reason if current else "",
        review.claimed_by.get_username() if review and review.claimed_by else "",
        "" if hours is None else round(hours, 3), obj.verdict, obj.urgency, _findings_text(obj),
        "" if obj.review_priority is None else obj.review_priority,
    ]  # fmt: skip
