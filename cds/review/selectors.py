"""Read reviews: the worklists (care-team scoped, no N+1), one review page, quality rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from cds.analysis.interpretation import (
    MeasurementRow,
    clinical_report_of,
    evidence_text,
    measurement_rows,
    measurements_of,
    st_rows,
    verdict_words,
)
from cds.analysis.models import Prediction
from cds.core.exceptions import ApplicationError
from cds.ecg.models import EcgRecording
from cds.review.errors import ReviewConflict, ReviewPermissionDenied
from cds.review.models import CareTeam, CareTeamSource, ModelCandidate, Review
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding
from inference.results import INTERPRETATION_NAME

AnyUser = AbstractBaseUser | AnonymousUser


def user_sees_all_sources(user: Any) -> bool:
    """Return True for users not limited to a care team: superusers and quality auditors."""
    return bool(user.is_superuser or user.has_perm("review.view_quality"))


def user_sources(user: Any) -> QuerySet[CareTeamSource, Any]:
    """Return the care-team sources a clinician covers (a values queryset of ``source``)."""
    return CareTeamSource.objects.filter(team__members=user).values("source")


def _care_team_covers(user: Any, recording: str) -> Q:
    """Return the condition "one of ``user``'s care teams covers the recording" (``recording``: its path).

    A team covers the ECGs of its organisation, narrowed to its sources when it lists any: an ECG of
    another organisation is never covered, whatever its source is called there.
    """
    organization = OuterRef(f"{recording}organization_id")
    by_source = CareTeamSource.objects.filter(
        team__members=user, team__organization_id=organization, source=OuterRef(f"{recording}received_from")
    )
    whole_organization = CareTeam.objects.filter(members=user, organization_id=organization, sources__isnull=True)
    return Q(Exists(by_source)) | Q(Exists(whole_organization))


def recordings_visible_to(*, user: Any) -> QuerySet[EcgRecording]:
    """Return the ECG recordings ``user`` may see (a clinician: only what their care teams cover)."""
    if user_sees_all_sources(user):
        return EcgRecording.objects.all()
    return EcgRecording.objects.filter(_care_team_covers(user, ""))


def reviews_visible_to(*, user: Any, queryset: QuerySet[Review] | None = None) -> QuerySet[Review]:
    """Return the reviews ``user`` may see; a clinician whose care teams do not cover an ECG sees none of it."""
    reviews = Review.objects.all() if queryset is None else queryset
    if user_sees_all_sources(user):
        return reviews
    return reviews.filter(_care_team_covers(user, "recording__"))


def review_visible(*, review: Review, user: Any) -> bool:
    """Return True when ``user`` may see ``review``."""
    return reviews_visible_to(user=user).filter(pk=review.pk).exists()


@dataclass(frozen=True)
class ReviewAccess:
    """What a user may do with a review now: services enforce it, the review page shows it (E6)."""

    can_change: bool  # holds review.change_review at all
    can_claim: bool
    is_claimer: bool
    can_edit: bool  # verdict, intervals, labels, report text
    can_sign: bool


def review_edit_denial(*, review: Review, user: Any) -> ApplicationError | None:
    """Return why ``user`` may not change ``review``'s verdict, intervals, labels or text; None if they may."""
    if not user.has_perm("review.change_review"):
        return ReviewPermissionDenied("you may not change reviews", {"review": review.pk})
    if review.status == Review.Status.PENDING:
        return ReviewConflict("claim the review first", {"review": review.pk})
    if review.is_open and review.claimed_by_id != user.pk:
        return ReviewConflict("the review is claimed by another clinician", {"review": review.pk})
    if review.status in {Review.Status.SIGNED, Review.Status.AMENDED} and not user.has_perm("review.sign_review"):
        return ReviewPermissionDenied("a signed review is amended by a senior clinician", {"review": review.pk})
    return None


def review_sign_denial(*, review: Review, user: Any) -> ApplicationError | None:
    """Return why ``user`` may not sign ``review`` now (a senior clinician, after a verdict); None if they may."""
    if not user.has_perm("review.sign_review"):
        return ReviewPermissionDenied("signing needs a senior clinician", {"review": review.pk})
    if review.is_open:
        return ReviewConflict("accept or reject the AI call before signing", {"review": review.pk})
    return None


def review_access(*, review: Review, user: Any) -> ReviewAccess:
    """Return what ``user`` may do with ``review`` now (the one copy of the review access rules)."""
    can_change = user.has_perm("review.change_review")
    return ReviewAccess(
        can_change=can_change,
        can_claim=can_change and review.status == Review.Status.PENDING,
        is_claimer=review.claimed_by_id == user.pk,
        can_edit=review_edit_denial(review=review, user=user) is None,
        can_sign=review_sign_denial(review=review, user=user) is None,
    )


WORKLIST_ORDER = ("-urgent", "-priority", "created_at", "recording__patient_id")


def interpretation_rows() -> QuerySet[Prediction]:
    """Return the interpretation predictions (verdict, urgency, findings, measurements, grounded text)."""
    return Prediction.objects.filter(model_name=INTERPRETATION_NAME).defer("anomaly_map")


def worklist(
    *, user: Any, queue: str = Review.Queue.FLAGGED, queryset: QuerySet[Review] | None = None
) -> QuerySet[Review]:
    """Return the worklist rows: visible reviews of ``queue`` with what the list shows.

    Ordered urgent first (an urgent finding), then by priority (score over operating point, or the
    re-annotation value), then the age of the finding (oldest first), then the patient (keeps one
    patient's ECGs together). Each row's interpretation comes as ``job.interpretations`` (one
    prefetch query per page, never one per row).
    """
    reviews = reviews_visible_to(user=user, queryset=queryset).filter(queue=queue)
    rows = reviews.select_related("prediction", "recording", "recording__patient", "claimed_by", "current", "job")
    # The list never shows waveforms or maps: without the defer each row drags ~240 kB of samples.
    rows = rows.defer("recording__samples", "prediction__anomaly_map")
    rows = rows.prefetch_related(
        Prefetch("job__predictions", queryset=interpretation_rows(), to_attr="interpretations")
    )
    return rows.order_by(*WORKLIST_ORDER)


def interpretation_for(review: Review) -> Prediction | None:
    """Return the interpretation of the review's job (prefetched on worklist rows), or None."""
    prefetched = getattr(review.job, "interpretations", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return interpretation_rows().filter(job_id=review.job_id).first()


def worklist_counts(*, user: Any, queue: str = Review.Queue.FLAGGED) -> dict[str, int]:
    """Return {status: count} of the visible reviews in ``queue`` (every status present, zeros too)."""
    rows = reviews_visible_to(user=user).filter(queue=queue).values("status").annotate(n=Count("pk"))
    counts = {status: 0 for status in Review.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def review_for_page(*, pk: int, user: Any) -> Review | None:
    """Return the review with everything its page shows, or None when missing or not visible."""
    return (
        reviews_visible_to(user=user)
        .select_related("prediction", "recording", "recording__patient", "claimed_by", "signed_by", "current", "job")
        .filter(pk=pk)
        .first()
    )


def review_revisions(*, review: Review) -> list[Any]:
    """Return the review's revisions, oldest first, with their authors."""
    return list(review.revisions.select_related("author").order_by("number"))


def previous_recordings(*, review: Review, user: Any, limit: int = 3) -> list[EcgRecording]:
    """Return the patient's earlier ECGs (newest first) that ``user`` may see, with samples, for comparison."""
    recording = review.recording
    if recording.patient_id is None:
        return []
    earlier = recordings_visible_to(user=user).filter(patient_id=recording.patient_id).exclude(pk=recording.pk)
    if recording.effective_at is not None:
        earlier = earlier.filter(Q(effective_at__lt=recording.effective_at) | Q(effective_at__isnull=True))
    return list(earlier.prefetch_related("reviews").order_by("-effective_at")[:limit])


def anomaly_map(prediction: Prediction) -> np.ndarray | None:
    """Return the prediction's anomaly map as float32 (leads, samples), or None when absent."""
    raw = bytes(prediction.anomaly_map or b"")
    if not raw or not prediction.map_leads:
        return None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(len(prediction.map_leads), -1)


def shadow_candidates() -> QuerySet[ModelCandidate]:
    """Return the candidates running in shadow now (every analysed ECG runs each of them)."""
    return ModelCandidate.objects.filter(status=ModelCandidate.Status.SHADOW).order_by("pk")


def quality_predictions() -> QuerySet[Prediction]:
    """Return predictions with their job, recording and review joined (quality audit list)."""
    rows = Prediction.objects.select_related(
        "job", "job__review", "job__review__current", "job__review__claimed_by", "recording", "recording__patient"
    ).defer("anomaly_map", "recording__samples")
    return rows.prefetch_related("reviews__current", "reviews__claimed_by")


@dataclass(frozen=True)
class InterpretationView:
    """What the review page shows of the interpretation: verdict, findings, measurements, decoder text."""

    prediction: Prediction
    clinical: ClinicalReport
    verdict_text: str
    findings: list[tuple[Finding, str]]  # each with its evidence as text
    measurements: EcgMeasurements | None
    measurement_rows: list[MeasurementRow]
    st_rows: list[tuple[str, str]]


def interpretation_view(review: Review) -> InterpretationView | None:
    """Return the review's interpretation ready to show, or None when none was stored for its job."""
    prediction = interpretation_for(review)
    if prediction is None:
        return None
    clinical = clinical_report_of(prediction)
    measurements = measurements_of(prediction)
    return InterpretationView(
        prediction=prediction,
        clinical=clinical,
        verdict_text=verdict_words(clinical.verdict),
        findings=[(finding, evidence_text(finding)) for finding in clinical.findings],
        measurements=measurements,
        measurement_rows=measurement_rows(measurements) if measurements is not None else [],
        st_rows=st_rows(measurements) if measurements is not None else [],
    )
