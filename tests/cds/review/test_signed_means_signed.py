"""Signed means signed: a change after signing awaits a new signature; export and cards use the signed text."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from django.contrib.messages import get_messages

from cds.review import services
from cds.review.export import annotations_export
from cds.review.models import Review
from cds.writeback.models import OutboxMessage

pytestmark = pytest.mark.django_db


def _signed(review: Review, clinician: Any, senior: Any, *, labels: list[str], text: str) -> Review:
    services.review_claim(review=review, user=clinician.user)
    services.review_accept(review=review, user=clinician.user)
    services.review_label(review=review, user=clinician.user, scp_labels=labels)
    return services.review_sign(review=review, user=senior.user, password="pw-senior", report_text=text)


@pytest.mark.parametrize(
    "change",
    [
        lambda r, u: services.review_edit_report(review=r, user=u, report_text="Changed after signing."),
        lambda r, u: services.review_label(review=r, user=u, scp_labels=["LVH"]),
        lambda r, u: services.review_correct_intervals(review=r, user=u, intervals=[]),
        lambda r, u: services.review_reject(review=r, user=u, reason="second thoughts"),
    ],
)
def test_it_returns_a_review_edited_after_signing_to_amended_awaiting_signature(
    flagged_review: Review, clinician: Any, senior_clinician: Any, settings: Any, change: Any
) -> None:
    settings.WRITEBACK_ENABLED = True
    signed = _signed(flagged_review, clinician, senior_clinician, labels=["IMI"], text="Inferior MI, old.")
    signed_revision = signed.signed_revision
    change(flagged_review, senior_clinician.user)
    review = Review.objects.get(pk=flagged_review.pk)
    assert review.status == "amended" and review.get_status_display() == "amended, awaiting signature"
    assert review.signed_revision == signed_revision and review.current != signed_revision
    # Nothing new reaches the EHR until the amendment is signed.
    assert OutboxMessage.objects.filter(key__startswith=f"review-sign:{review.pk}:").count() == 1
    services.review_sign(review=review, user=senior_clinician.user, password="pw-senior")
    review = Review.objects.get(pk=flagged_review.pk)
    assert review.status == "signed" and review.signed_revision == review.current
    assert OutboxMessage.objects.filter(key__startswith=f"review-sign:{review.pk}:").count() == 2


def test_it_exports_the_signed_revision_not_a_later_unsigned_edit(
    flagged_review: Review, clinician: Any, senior_clinician: Any, tmp_path: Path
) -> None:
    _signed(flagged_review, clinician, senior_clinician, labels=["IMI"], text="Inferior MI, old.")
    services.review_label(review=flagged_review, user=senior_clinician.user, scp_labels=["LVH"])
    services.review_edit_report(review=flagged_review, user=senior_clinician.user, report_text="Unsigned draft.")
    summary = annotations_export(out=tmp_path)
    assert summary.records == 1
    with (tmp_path / "ptbxl_database.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert "IMI" in row["scp_codes"] and "LVH" not in row["scp_codes"]
    assert row["report"] == "Inferior MI, old."


def test_it_exports_nothing_a_senior_clinician_has_not_signed(
    flagged_review: Review, clinician: Any, tmp_path: Path
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    services.review_label(review=flagged_review, user=clinician.user, scp_labels=["IMI"])
    assert annotations_export(out=tmp_path).records == 0


def test_it_shows_the_clinicians_signed_text_on_the_cds_card(
    flagged_review: Review, clinician: Any, senior_clinician: Any, service_account: Any
) -> None:
    patient_id = flagged_review.recording.patient.logical_id
    request = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": patient_id},
    }
    before = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json").json()
    assert "Preliminary AI" in before["cards"][0]["detail"] and "signed" not in before["cards"][0]["summary"]
    _signed(flagged_review, clinician, senior_clinician, labels=["IMI"], text="Inferior MI, old.")
    card = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json").json()[
        "cards"
    ][0]
    assert card["summary"] == "ECG 2024-03-01 (signed): Inferior MI, old."
    assert card["detail"].startswith("**Clinician's signed report**") and "AI call confirmed" in card["detail"]
    services.review_edit_report(review=flagged_review, user=senior_clinician.user, report_text="Unsigned draft.")
    card = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json").json()[
        "cards"
    ][0]
    assert "Inferior MI, old." in card["summary"] and "Unsigned draft." not in card["detail"]
    assert "An amendment awaits signature." in card["detail"]


def test_it_signs_only_after_the_password_is_entered_again_and_records_what_signing_means(
    flagged_review: Review, clinician: Any, senior_clinician: Any
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    for password in ("", "pw-clin", "wrong"):
        with pytest.raises(services.ApplicationError, match="password"):
            services.review_sign(review=flagged_review, user=senior_clinician.user, password=password)
    review = Review.objects.get(pk=flagged_review.pk)
    assert review.status == "accepted" and review.signed_revision is None and review.signature_count == 0
    services.review_sign(review=flagged_review, user=senior_clinician.user, password="pw-senior")
    review = Review.objects.select_related("signed_revision").get(pk=flagged_review.pk)
    assert review.signed_revision is not None
    assert review.signed_revision.signature_meaning == services.SIGNATURE_MEANING
    assert "approve the report as the final clinical interpretation" in review.signed_revision.signature_meaning


def test_it_refuses_a_signature_without_the_password_in_the_review_page(
    flagged_review: Review, clinician: Any, senior_clinician: Any
) -> None:
    services.review_claim(review=flagged_review, user=clinician.user)
    services.review_accept(review=flagged_review, user=clinician.user)
    act = f"/admin/review/review/{flagged_review.pk}/act/sign/"
    page = senior_clinician.client.get(f"/admin/review/review/{flagged_review.pk}/change/").content.decode()
    assert 'id="sign-password"' in page and services.SIGNATURE_MEANING in page
    refused = senior_clinician.client.post(act, {"report_text": "Signed text."})
    assert refused.status_code == 302
    assert any("enter your password to sign" in str(m) for m in get_messages(refused.wsgi_request))
    assert Review.objects.get(pk=flagged_review.pk).status == "accepted"
    senior_clinician.client.post(act, {"report_text": "Signed text.", "password": "pw-senior"})
    assert Review.objects.get(pk=flagged_review.pk).status == "signed"
