"""Review state transitions and clinical edits (the only place that changes a ``Review``).

Every clinical change appends a ``ReviewRevision`` carrying the full state after it; nothing is
overwritten in place. Access is checked here as well as in the views, so no caller can act on an
ECG outside the user's care teams.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cds.analysis.models import AnalysisJob, Prediction
from cds.core.exceptions import ApplicationError
from cds.review.errors import ReviewConflict, ReviewPermissionDenied
from cds.review.fhir import signed_resources_store
from cds.review.models import Review, ReviewRevision
from cds.review.scp import SCP_CODES
from cds.review.selectors import review_edit_denial, review_sign_denial, review_visible
from inference.analysis_result import AnalysisResult
from inference.results import DETECTOR_NAME, FOUNDATION_NAME, INTERPRETATION_NAME

logger = logging.getLogger(__name__)


def _reannotation_priority(result: AnalysisResult) -> float | None:
    """Return the foundation model's re-annotation value (active learning), or its uncertainty when not served."""
    foundation = result.foundation
    if foundation is None:
        return None
    if foundation.review_priority is not None:
        return float(foundation.review_priority)
    # Same uncertainty term as training.foundation_active (1 at p = 0.5, 0 at p in {0, 1}).
    return 1.0 - abs(2.0 * foundation.probability_abnormal - 1.0)


def _model_row(predictions: list[Prediction], model_name: str) -> Prediction | None:
    return next((p for p in predictions if p.model_name == model_name), None)


def _draft_text(predictions: list[Prediction]) -> str:
    """Return the draft the clinician edits: the grounded report, else the foundation model's text."""
    for model_name in (INTERPRETATION_NAME, FOUNDATION_NAME):
        row = _model_row(predictions, model_name)
        if row is not None and row.report_text:
            return row.report_text
    return ""


@transaction.atomic
def review_create_for_results(
    *, job: AnalysisJob, predictions: list[Prediction], result: AnalysisResult
) -> Review | None:
    """Open a review for a flagged ECG, or queue a normal one worth a second look; else None.

    Flagged means the one verdict is not normal: the interpretation's when it ran, else the
    detector's flag. Idempotent per job. The first revision (``ai``) holds the AI proposal:
    intervals and the draft report (the grounded report text).
    """
    existing = Review.objects.filter(job=job).first()
    if existing is not None:
        return existing
    detector = _model_row(predictions, DETECTOR_NAME) or predictions[0]
    interpretation = _model_row(predictions, INTERPRETATION_NAME)
    flagged = interpretation.flagged if interpretation is not None else detector.flagged
    if flagged:
        queue = Review.Queue.FLAGGED
        threshold = detector.threshold or 1.0
        priority = (detector.score or 0.0) / threshold if threshold else detector.score or 0.0
    else:
        al_priority = _reannotation_priority(result)
        if al_priority is None or al_priority < settings.REVIEW_REANNOTATION_MIN_PRIORITY:
            return None
        queue, priority = Review.Queue.REANNOTATION, al_priority
    urgent = interpretation is not None and interpretation.urgency == "urgent"
    review = Review(
        job=job, prediction=detector, recording=job.recording, queue=queue, priority=priority, urgent=urgent
    )
    review.full_clean()
    review.save()
    _revise(
        review,
        kind=ReviewRevision.Kind.AI,
        author=None,
        intervals=list(detector.intervals),
        report_text=_draft_text(predictions),
    )
    return review


def _revise(review: Review, *, kind: str, author: Any, **changes: Any) -> ReviewRevision:
    """Append a revision: the current state with ``changes`` applied."""
    previous = review.current
    state: dict[str, Any] = {
        "verdict": previous.verdict if previous else "",
        "reason": previous.reason if previous else "",
        "intervals": previous.intervals if previous else [],
        "scp_labels": previous.scp_labels if previous else [],
        "report_text": previous.report_text if previous else "",
    }
    state.update(changes)
    number = (previous.number + 1) if previous else 1
    revision = ReviewRevision(review=review, number=number, kind=kind, author=author, **state)
    revision.full_clean(exclude=["review", "author"])
    revision.save()
    review.current = revision
    review.save(update_fields=["current", "updated_at"])
    return revision


def _amend_if_signed(review: Review) -> None:
    """A change to a signed review makes it "amended, awaiting signature": signed means this text was signed."""
    if review.status == Review.Status.SIGNED:
        review.status = Review.Status.AMENDED
        review.save(update_fields=["status", "updated_at"])


def _locked(review: Review, user: Any) -> Review:
    """Return the review locked for update after checking that ``user`` may see it."""
    if not review_visible(review=review, user=user):
        raise ReviewPermissionDenied("this ECG is outside your care teams", {"review": review.pk})
    # Lock: two clinicians acting at once must serialize (claim races, revision numbers).
    return Review.objects.select_for_update(of=("self",)).select_related("current", "recording").get(pk=review.pk)


def _require_change(review: Review, user: Any) -> None:
    denial = review_edit_denial(review=review, user=user)
    if denial is not None:
        raise denial


@transaction.atomic
def review_claim(*, review: Review, user: Any) -> Review:
    """Claim a pending review for ``user``; claiming one's own claim again is a no-op."""
    review = _locked(review, user)
    if not user.has_perm("review.change_review"):
        raise ReviewPermissionDenied("you may not review ECGs", {"review": review.pk})
    if review.status == Review.Status.CLAIMED and review.claimed_by_id == user.pk:
        return review
    if review.status == Review.Status.CLAIMED:
        raise ReviewConflict("the review is claimed by another clinician", {"review": review.pk})
    if review.status != Review.Status.PENDING:
        raise ReviewConflict(f"the review is {review.status}", {"review": review.pk, "status": review.status})
    review.status, review.claimed_by, review.claimed_at = Review.Status.CLAIMED, user, timezone.now()
    review.full_clean(exclude=["current"])
    review.save(update_fields=["status", "claimed_by", "claimed_at", "updated_at"])
    return review


@transaction.atomic
def review_unclaim(*, review: Review, user: Any) -> Review:
    """Put a claimed review back on the worklist (its claimer, or an administrator)."""
    review = _locked(review, user)
    if review.status != Review.Status.CLAIMED:
        raise ReviewConflict(f"the review is {review.status}", {"review": review.pk})
    if review.claimed_by_id != user.pk and not user.is_superuser:
        raise ReviewConflict("only the clinician who claimed it can unclaim it", {"review": review.pk})
    review.status, review.claimed_by, review.claimed_at = Review.Status.PENDING, None, None
    review.save(update_fields=["status", "claimed_by", "claimed_at", "updated_at"])
    return review


def _verdict(review: Review, user: Any, *, verdict: str, reason: str) -> Review:
    review = _locked(review, user)
    _require_change(review, user)
    kind = ReviewRevision.Kind.ACCEPT if verdict == "accept" else ReviewRevision.Kind.REJECT
    _revise(review, kind=kind, author=user, verdict=verdict, reason=reason)
    if review.status in {Review.Status.SIGNED, Review.Status.AMENDED}:
        review.status = Review.Status.AMENDED
    else:
        review.status = Review.Status.ACCEPTED if verdict == "accept" else Review.Status.REJECTED
    review.decided_at = review.decided_at or timezone.now()
    review.save(update_fields=["status", "decided_at", "updated_at"])
    return review


@transaction.atomic
def review_accept(*, review: Review, user: Any) -> Review:
    """Confirm the AI call (flagged: a true finding; re-annotation: truly normal)."""
    return _verdict(review, user, verdict="accept", reason="")


@transaction.atomic
def review_reject(*, review: Review, user: Any, reason: str) -> Review:
    """Reject the AI call (flagged: a false positive) with a reason. Raises ApplicationError without one."""
    if not reason.strip():
        raise ApplicationError("a rejection needs a reason", {"review": review.pk})
    return _verdict(review, user, verdict="reject", reason=reason.strip())


def _clean_intervals(intervals: list[dict[str, Any]], leads: list[str], duration_ms: float) -> list[dict[str, Any]]:
    cleaned = []
    for index, interval in enumerate(intervals):
        try:
            lead, start, end = str(interval["lead"]), float(interval["start_ms"]), float(interval["end_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApplicationError(f"interval {index} needs lead, start_ms and end_ms", {"index": index}) from exc
        if lead not in leads:
            raise ApplicationError(f"interval {index}: lead {lead!r} is not in this ECG", {"index": index})
        if not 0 <= start < end <= duration_ms:
            raise ApplicationError(f"interval {index}: need 0 <= start < end <= {duration_ms:.0f} ms", {"index": index})
        item: dict[str, Any] = {"lead": lead, "start_ms": round(start, 1), "end_ms": round(end, 1)}
        if "score" in interval and interval["score"] is not None:
            item["score"] = float(interval["score"])
        cleaned.append(item)
    return sorted(cleaned, key=lambda i: (leads.index(i["lead"]), i["start_ms"]))


@transaction.atomic
def review_correct_intervals(*, review: Review, user: Any, intervals: list[dict[str, Any]]) -> Review:
    """Replace the intervals (added, moved or deleted per lead) by ``intervals``, as a new revision."""
    review = _locked(review, user)
    _require_change(review, user)
    recording = review.recording
    duration_ms = recording.n_samples / recording.sample_rate_hz * 1000.0
    cleaned = _clean_intervals(intervals, list(recording.leads), duration_ms)
    _revise(review, kind=ReviewRevision.Kind.INTERVALS, author=user, intervals=cleaned)
    _amend_if_signed(review)
    return review


@transaction.atomic
def review_label(*, review: Review, user: Any, scp_labels: list[str]) -> Review:
    """Assign PTB-XL SCP statements. Raises ApplicationError for an unknown code."""
    review = _locked(review, user)
    _require_change(review, user)
    unknown = sorted(set(scp_labels) - set(SCP_CODES))
    if unknown:
        raise ApplicationError(f"unknown SCP statements: {', '.join(unknown)}", {"unknown": unknown})
    _revise(review, kind=ReviewRevision.Kind.LABELS, author=user, scp_labels=sorted(set(scp_labels)))
    _amend_if_signed(review)
    return review


@transaction.atomic
def review_edit_report(*, review: Review, user: Any, report_text: str) -> Review:
    """Replace the report text (a new revision; sign it to release it)."""
    review = _locked(review, user)
    _require_change(review, user)
    if not report_text.strip():
        raise ApplicationError("the report text is empty", {"review": review.pk})
    _revise(review, kind=ReviewRevision.Kind.REPORT, author=user, report_text=report_text.strip())
    _amend_if_signed(review)
    return review


# What a signature means, shown beside the sign button and stored with each signature.
SIGNATURE_MEANING = (
    "I have reviewed this ECG, the AI findings and this report, and I approve the report as the final "
    "clinical interpretation released to the patient record."
)


@transaction.atomic
def review_sign(*, review: Review, user: Any, password: str, report_text: str | None = None) -> Review:
    """Sign the report: DiagnosticReport final (amended on a later signature), Task completed, EHR.

    Needs the ``review.sign_review`` permission, a verdict and the signer's password entered again
    (a signature is an act of the person, not of whoever holds their open session); records
    ``SIGNATURE_MEANING`` with the signature. Stores new versions of the DiagnosticReport and Task
    in our FHIR store and, with ``WRITEBACK_ENABLED``, queues them to the EHR under a key unique to
    this signature. Raises ApplicationError (nothing signed) for a wrong password.
    """
    review = _locked(review, user)
    denial = review_sign_denial(review=review, user=user)
    if denial is not None:
        raise denial
    if not password or not user.check_password(password):
        logger.warning("signature refused for review %s: password re-entry failed", review.pk)
        raise ApplicationError("enter your password to sign; the report was not signed", {"review": review.pk})
    changes: dict[str, Any] = {"signature_meaning": SIGNATURE_MEANING}
    if report_text is not None and report_text.strip():
        changes["report_text"] = report_text.strip()
    revision = _revise(review, kind=ReviewRevision.Kind.SIGN, author=user, **changes)
    amended = review.signature_count > 0
    review.status, review.signed_by, review.signed_at = Review.Status.SIGNED, user, timezone.now()
    review.signed_revision = revision
    review.signature_count += 1
    review.decided_at = review.decided_at or review.signed_at
    review.save(
        update_fields=[
            "status",
            "signed_by",
            "signed_at",
            "signed_revision",
            "signature_count",
            "decided_at",
            "updated_at",
        ]
    )
    signed_resources_store(review=review, revision=revision, user=user, amended=amended)
    return review
