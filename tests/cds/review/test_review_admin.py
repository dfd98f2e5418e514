"""The worklist, the review page and its forms, the prediction audit CSV and the quality dashboard."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from auditlog.models import LogEntry

from cds.analysis.models import AnalysisJob
from cds.review import services
from cds.review.models import Review
from cds.review.selectors import worklist
from tests.conftest import OTHER_SOURCE

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_reviews(analysed_ecg: Callable[..., AnalysisJob]) -> list[Review]:
    jobs = [
        analysed_ecg(score=1.5, effective="2024-01-01T10:00:00Z"),
        analysed_ecg(score=3.0, effective="2024-02-01T10:00:00Z"),
        analysed_ecg(score=1.5, effective="2024-03-01T10:00:00Z", source=OTHER_SOURCE),
    ]
    return [Review.objects.get(job=job) for job in jobs]


def test_it_orders_the_worklist_by_priority_then_age_of_the_finding(three_reviews: list[Review], auditor: Any) -> None:
    low_old, high, low_new = three_reviews
    assert [r.pk for r in worklist(user=auditor.user)] == [high.pk, low_old.pk, low_new.pk]


def test_it_counts_per_status_and_filters_the_worklist(three_reviews: list[Review], clinician: Any) -> None:
    services.review_claim(review=three_reviews[0], user=clinician.user)
    body = clinician.client.get("/admin/review/review/").content.decode()
    assert "pending <b>1</b>" in body and "claimed <b>1</b>" in body  # ward-b's ECG is not counted
    filtered = clinician.client.get("/admin/review/review/?status__exact=claimed").content.decode()
    assert f"Review {three_reviews[0].pk}<" in filtered and f"Review {three_reviews[1].pk}<" not in filtered
    by_reviewer = clinician.client.get(f"/admin/review/review/?reviewer={clinician.user.pk}").content.decode()
    assert f"Review {three_reviews[0].pk}<" in by_reviewer and f"Review {three_reviews[1].pk}<" not in by_reviewer
    by_version = clinician.client.get("/admin/review/review/?prediction__model_version=9.9").content.decode()
    assert f"Review {three_reviews[0].pk}<" not in by_version


def test_it_claims_from_the_worklist_and_refuses_what_another_clinician_holds(
    three_reviews: list[Review], clinician: Any, senior_clinician: Any
) -> None:
    services.review_claim(review=three_reviews[1], user=senior_clinician.user)
    pks = [str(r.pk) for r in three_reviews[:2]]
    response = clinician.client.post(
        "/admin/review/review/", {"action": "claim_selected", "_selected_action": pks}, follow=True
    )
    body = response.content.decode()
    assert "1 claimed" in body and "claimed by another clinician" in body
    assert Review.objects.get(pk=three_reviews[0].pk).claimed_by == clinician.user
    assert Review.objects.get(pk=three_reviews[1].pk).claimed_by == senior_clinician.user


def test_it_renders_the_review_page_and_logs_the_view(flagged_review: Review, clinician: Any) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    response = clinician.client.get(f"/admin/review/review/{flagged_review.pk}/change/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in body and "25 mm/s" in body and "operating point" in body
    assert "sinus rhythm" in body and "ASMI" in body  # report draft and the SCP label list
    viewed = LogEntry.objects.filter(action=LogEntry.Action.ACCESS, object_pk=str(flagged_review.pk))
    assert viewed.count() == 1 and viewed.get().actor == clinician.user


def test_it_shows_the_patients_earlier_ecgs_from_visible_sources_only(
    three_reviews: list[Review], senior_clinician: Any, auditor: Any
) -> None:
    newest = three_reviews[2]  # ward-b: the auditor sees it and both earlier ward-a ECGs
    body = auditor.client.get(f"/admin/review/review/{newest.pk}/change/").content.decode()
    assert body.count('class="rv-previous"') == 2 and body.count("<svg") >= 3
    middle = three_reviews[1]
    body = senior_clinician.client.get(f"/admin/review/review/{middle.pk}/change/").content.decode()
    assert body.count('class="rv-previous"') == 1 and f"review {three_reviews[0].pk}<" in body


def test_it_corrects_intervals_through_the_page_form(flagged_review: Review, clinician: Any) -> None:
    act = f"/admin/review/review/{flagged_review.pk}/act/"
    clinician.client.post(act + "claim/")
    form = {
        "lead_0": "V2", "start_0": "1000", "end_0": "1600",  # moved
        "lead_1": "V2", "start_1": "1500", "end_1": "1900", "delete_1": "on",  # deleted
        "lead_new": "V4", "start_new": "2000", "end_new": "2300",  # added
    }  # fmt: skip
    assert clinician.client.post(act + "intervals/", form).status_code == 302
    review = Review.objects.select_related("current").get(pk=flagged_review.pk)
    assert review.current is not None
    assert [(i["lead"], i["start_ms"], i["end_ms"]) for i in review.current.intervals] == [
        ("V2", 1000.0, 1600.0),
        ("V4", 2000.0, 2300.0),
    ]
    bad = clinician.client.post(
        act + "intervals/", {"lead_new": "V4", "start_new": "900", "end_new": "100"}, follow=True
    )
    assert "start &lt; end" in bad.content.decode()


def test_it_exports_the_prediction_audit_as_csv(flagged_review: Review, clinician: Any, auditor: Any) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_reject(review=flagged_review, user=clinician.user, reason="artefact")
    response = auditor.client.get("/admin/review/qualityprediction/export.csv?model_name=ecg-anomaly-detector")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == "ecg-anomaly-detector" and row["verdict"] == "reject" and row["reason"] == "artefact"
    assert len(row["waveform_sha256"]) == 64 and row["reviewer"] == "clin" and float(row["time_to_review_h"]) >= 0
    listing = auditor.client.get("/admin/review/qualityprediction/").content.decode()
    assert "rejected · reject" in listing


def test_it_computes_quality_metrics_on_reviewed_ecgs(
    analysed_ecg: Callable[..., AnalysisJob], clinician: Any, senior_clinician: Any, auditor: Any
) -> None:
    # Two confirmed flags, one false positive, one re-annotated normal confirmed, one missed finding.
    cases = [(3.0, "accept"), (2.0, "accept"), (1.2, "reject"), (0.3, "accept"), (0.8, "reject")]
    for n, (score, verdict) in enumerate(cases):
        job = analysed_ecg(score=score, review_priority=0.9, effective=f"2024-03-0{n + 1}T10:00:00Z")
        review = Review.objects.get(job=job)
        services.review_claim(review=review, user=clinician.user)
        if verdict == "accept":
            services.review_accept(review=review, user=clinician.user)
        else:
            services.review_reject(review=review, user=clinician.user, reason="disagree")
    services.review_reject(review=Review.objects.get(prediction__score=3.0), user=senior_clinician.user, reason="no")
    from cds.review.metrics import quality_metrics

    metrics = quality_metrics(model_version="1.0.0", since=None, until=None, period="day")
    assert metrics.n_reviewed == 5 and metrics.confusion == {"tp": 1, "fp": 2, "fn": 1, "tn": 1}
    assert metrics.sensitivity == pytest.approx(0.5) and metrics.specificity == pytest.approx(1 / 3)
    assert metrics.ppv == pytest.approx(1 / 3)
    assert metrics.reviewer_agreement == 0.0 and metrics.n_multi_reviewed == 1
    assert metrics.auroc is not None and len(metrics.drift_periods) == 1
    page = auditor.client.get("/admin/review/qualityprediction/dashboard/?model_version=1.0.0&period=day")
    assert page.status_code == 200 and page.content.decode().count("<svg") >= 2


def test_it_computes_auroc_with_ties_like_the_rank_formula() -> None:
    import numpy as np

    from cds.review.metrics import auroc_and_roc

    auroc, fpr, tpr = auroc_and_roc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([False, False, True, True]))
    assert auroc == pytest.approx(0.875) and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert auroc_and_roc(np.array([0.1]), np.array([True]))[0] is None
