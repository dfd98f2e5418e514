"""Review services: worklist entry from results, claims, verdicts, corrections, labels, signing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.task import Task

from cds.analysis.fhir_results import identifier_system
from cds.analysis.models import AnalysisJob, ResultResource
from cds.core.exceptions import ApplicationError
from cds.fhir.models import StoredResource
from cds.review import services
from cds.review.models import Review, ReviewRevision
from cds.writeback.models import OutboxMessage

pytestmark = pytest.mark.django_db


def current_resource(review: Review, role: str) -> StoredResource:
    link = ResultResource.objects.select_related("resource").get(job=review.job, role=role)
    return StoredResource.objects.get(
        resource_type=link.resource.resource_type, logical_id=link.resource.logical_id, is_current=True
    )


def test_it_opens_a_review_with_the_ai_proposal_for_a_flagged_ecg(flagged_review: Review) -> None:
    assert flagged_review.queue == "flagged" and flagged_review.status == "pending"
    assert flagged_review.priority == pytest.approx(2.5)
    first = flagged_review.current
    assert first is not None and first.kind == "ai" and first.author is None and len(first.intervals) == 2
    assert first.report_text.startswith("sinus rhythm")


def test_it_queues_uncertain_not_flagged_ecgs_for_reannotation_only(analysed_ecg: Callable[..., AnalysisJob]) -> None:
    unsure = analysed_ecg(ecg_id=9, score=0.3, review_priority=0.8)
    sure = analysed_ecg(ecg_id=63, score=0.3, review_priority=0.1, effective="2024-04-01T10:00:00Z")
    fallback = analysed_ecg(ecg_id=63, score=0.3, probability_abnormal=0.55, effective="2024-05-01T10:00:00Z")
    assert Review.objects.get(job=unsure).queue == "reannotation"
    assert not Review.objects.filter(job=sure).exists()
    # Without a served priority the classifier's uncertainty (1 - |2p - 1| = 0.9) ranks it.
    assert Review.objects.get(job=fallback).priority == pytest.approx(0.9)


def test_it_lets_only_one_clinician_claim_a_review(
    flagged_review: Review, clinician: Any, senior_clinician: Any
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    with pytest.raises(services.ReviewConflict):
        services.review_claim(review=flagged_review, user=senior_clinician.user)
    with pytest.raises(services.ReviewConflict):
        services.review_unclaim(review=flagged_review, user=senior_clinician.user)
    services.review_unclaim(review=flagged_review, user=clinician.user)
    assert services.review_claim(review=flagged_review, user=senior_clinician.user).claimed_by == senior_clinician.user


def test_it_refuses_changes_before_a_claim_and_rejections_without_a_reason(
    flagged_review: Review, clinician: Any
) -> None:
    with pytest.raises(services.ReviewConflict):
        services.review_accept(review=flagged_review, user=clinician.user)
    services.review_claim(review=flagged_review, user=clinician.user)
    with pytest.raises(ApplicationError, match="reason"):
        services.review_reject(review=flagged_review, user=clinician.user, reason="  ")
    review = services.review_reject(review=flagged_review, user=clinician.user, reason="baseline wander artefact")
    assert review.status == "rejected" and review.current is not None and review.current.verdict == "reject"
    assert review.decided_at is not None


def test_it_keeps_every_revision_when_intervals_are_added_moved_and_deleted(
    flagged_review: Review, clinician: Any
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    ai = list(flagged_review.current.intervals)  # type: ignore[union-attr]
    moved = {**ai[0], "start_ms": 1100.0, "end_ms": 1500.0}
    added = {"lead": "V5", "start_ms": 3000, "end_ms": 3400}
    services.review_correct_intervals(review=flagged_review, user=clinician.user, intervals=[moved, added])
    with pytest.raises(ApplicationError, match="lead 'X9'"):
        services.review_correct_intervals(
            review=flagged_review, user=clinician.user, intervals=[{"lead": "X9", "start_ms": 0, "end_ms": 5}]
        )
    with pytest.raises(ApplicationError, match="start < end"):
        services.review_correct_intervals(
            review=flagged_review, user=clinician.user, intervals=[{"lead": "I", "start_ms": 500, "end_ms": 100}]
        )
    revisions = list(ReviewRevision.objects.filter(review=flagged_review).order_by("number"))
    assert [r.kind for r in revisions] == ["ai", "intervals"]
    assert revisions[0].intervals == ai  # the AI proposal is untouched
    assert [(i["lead"], i["start_ms"]) for i in revisions[1].intervals] == [("V2", 1100.0), ("V5", 3000.0)]


def test_it_accepts_only_known_scp_statements(flagged_review: Review, clinician: Any) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    with pytest.raises(ApplicationError, match="NOPE"):
        services.review_label(review=flagged_review, user=clinician.user, scp_labels=["ASMI", "NOPE"])
    review = services.review_label(review=flagged_review, user=clinician.user, scp_labels=["ASMI", "SR", "ASMI"])
    assert review.current is not None and review.current.scp_labels == ["ASMI", "SR"]


def test_it_refuses_a_signature_from_a_clinician_who_is_not_senior(flagged_review: Review, clinician: Any) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    with pytest.raises(services.ReviewPermissionDenied):
        services.review_sign(review=flagged_review, user=clinician.user, password="pw-clin")


def test_it_signs_final_then_amended_and_writes_back_each_signature(
    flagged_review: Review, clinician: Any, senior_clinician: Any, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    settings.WRITEBACK_ENABLED = True
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    services.review_label(review=flagged_review, user=clinician.user, scp_labels=["ASMI"])
    with django_capture_on_commit_callbacks() as callbacks:
        services.review_sign(
            review=flagged_review, user=senior_clinician.user, password="pw-senior", report_text="Anteroseptal MI, old."
        )
    assert len(callbacks) == 1  # the outbox delivery is scheduled after commit

    report = current_resource(flagged_review, "report")
    task = current_resource(flagged_review, "review-task")
    assert (report.version_id, report.content["status"], report.content["conclusion"]) == (
        2,
        "final",
        "Anteroseptal MI, old.",
    )
    performer = report.content["performer"][0]
    assert (
        performer["type"] == "Practitioner" and performer["identifier"]["value"] == f"user-{senior_clinician.user.pk}"
    )
    assert "senior" not in json.dumps(report.content["performer"])  # the login name is never published
    codings = report.content["conclusionCode"][0]["coding"]
    assert [c["code"] for c in codings if c["system"] == "urn:ecg-cds:CodeSystem:ptbxl-scp"] == ["ASMI"]
    assert base64.b64decode(report.content["presentedForm"][0]["data"]).decode() == "Anteroseptal MI, old."
    assert task.content["status"] == "completed"
    DiagnosticReport.model_validate(report.content)
    Task.model_validate(task.content)
    assert StoredResource.objects.filter(
        logical_id=report.logical_id, version_id=1, content__status="preliminary"
    ).exists()

    services.review_edit_report(
        review=flagged_review, user=senior_clinician.user, report_text="Anteroseptal MI, age undetermined."
    )
    with django_capture_on_commit_callbacks(execute=False):
        services.review_sign(review=flagged_review, user=senior_clinician.user, password="pw-senior")
    report = current_resource(flagged_review, "report")
    assert (report.version_id, report.content["status"]) == (3, "amended")

    messages = list(OutboxMessage.objects.filter(key__startswith=f"review-sign:{flagged_review.pk}:").order_by("pk"))
    assert len(messages) == 2 and messages[0].key != messages[1].key
    bundle = messages[1].bundle
    Bundle.model_validate(bundle)
    methods = [(e["request"]["method"], e["request"]["url"].split("?")[0]) for e in bundle["entry"]]
    assert methods == [("PUT", "DiagnosticReport"), ("PUT", "Task")]
    remote_report = bundle["entry"][0]["resource"]
    assert remote_report["status"] == "amended" and "id" not in remote_report
    # EHR ids are unknown to us: conditional references, resolved by the EHR in the transaction.
    assert all(
        ref["reference"].startswith(f"Observation?identifier={identifier_system()}|") for ref in remote_report["result"]
    )
    job_key = f"job-{flagged_review.job.writeback_uuid}"
    assert bundle["entry"][0]["request"]["url"] == f"DiagnosticReport?identifier={identifier_system()}|{job_key}-report"
    review = Review.objects.get(pk=flagged_review.pk)
    assert (review.status, review.signature_count, review.signed_by) == ("signed", 2, senior_clinician.user)


def test_it_lets_only_a_senior_clinician_change_a_signed_review(
    flagged_review: Review, clinician: Any, senior_clinician: Any
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    services.review_sign(review=flagged_review, user=senior_clinician.user, password="pw-senior")
    for change in (
        lambda: services.review_reject(review=flagged_review, user=clinician.user, reason="second thoughts"),
        lambda: services.review_label(review=flagged_review, user=clinician.user, scp_labels=["NORM"]),
        lambda: services.review_edit_report(review=flagged_review, user=clinician.user, report_text="edited"),
    ):
        with pytest.raises(services.ReviewPermissionDenied):
            change()
    services.review_label(review=flagged_review, user=senior_clinician.user, scp_labels=["NORM"])
    assert Review.objects.get(pk=flagged_review.pk).status == "amended"  # signed means this text was signed


def test_it_queues_nothing_to_the_ehr_when_write_back_is_off(flagged_review: Review, senior_clinician: Any) -> None:
    services.review_claim(review=flagged_review, user=senior_clinician.user)
    services.review_accept(review=flagged_review, user=senior_clinician.user)
    services.review_sign(review=flagged_review, user=senior_clinician.user, password="pw-senior")
    assert not OutboxMessage.objects.filter(key__startswith="review-sign:").exists()
    assert current_resource(flagged_review, "report").content["status"] == "final"


def test_it_refuses_any_action_outside_the_care_team(flagged_review: Review, outside_clinician: Any) -> None:
    with pytest.raises(services.ReviewPermissionDenied):
        services.review_claim(review=flagged_review, user=outside_clinician.user)
