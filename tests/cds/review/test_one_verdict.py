"""One verdict everywhere: stored interpretation, FHIR results, Task, review worklist and page, CDS card, audit."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest

from cds.analysis.models import AnalysisJob, Prediction, ResultResource
from cds.pipeline.analysis import analysis_results_store
from cds.review import services
from cds.review.models import Review
from cds.review.selectors import worklist
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding
from tests.cds.factories import flagged_clinical, make_measurements, make_result, normal_clinical, with_interpretation

pytestmark = pytest.mark.django_db


def hook_cards(client: Any, patient_id: str) -> list[dict[str, Any]]:
    request = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
        "prefetch": {},
    }
    response = client.post("/cds-services/ecg-ai-findings", request, content_type="application/json")
    assert response.status_code == 200, response.content
    return list(response.json()["cards"])


def stored(job: AnalysisJob, role: str) -> list[dict[str, Any]]:
    links = ResultResource.objects.filter(job=job, role=role).select_related("resource")
    return [link.resource.content for link in links]


@pytest.mark.parametrize(
    ("clinical", "score", "expected"),
    [
        # The detector alone would say the opposite in both cases: the interpretation's verdict wins.
        (flagged_clinical(urgent=True), 0.4, {"flag": "A", "task": "urgent", "card": "critical", "queue": "flagged"}),
        (flagged_clinical(), 0.4, {"flag": "A", "task": "routine", "card": "warning", "queue": "flagged"}),
        (normal_clinical(), 2.5, {"flag": "N", "task": None, "card": "info", "queue": None}),
    ],
    ids=["urgent", "flagged", "normal"],
)
def test_it_shows_the_same_verdict_in_fhir_task_card_and_review(
    analysed_ecg: Callable[..., AnalysisJob],
    service_account: Any,
    clinical: ClinicalReport,
    score: float,
    expected: dict[str, Any],
) -> None:
    job = analysed_ecg(score=score, clinical=clinical)
    (score_observation,) = stored(job, "anomaly-score")
    assert score_observation["interpretation"][0]["coding"][0]["code"] == expected["flag"]
    (report,) = stored(job, "report")
    assert report["conclusion"] == clinical.text
    assert [t["priority"] for t in stored(job, "review-task")] == ([expected["task"]] if expected["task"] else [])
    patient_id = job.recording.patient.logical_id
    assert [c["indicator"] for c in hook_cards(service_account, patient_id)] == [expected["card"]]
    review = Review.objects.filter(job=job).first()
    assert (review.queue if review else None) == expected["queue"]
    if review is not None:
        assert review.urgent == (clinical.urgency == "urgent")
        assert review.current is not None and review.current.report_text == clinical.text


def test_it_stores_the_interpretation_with_version_and_provenance(analysed_ecg: Callable[..., AnalysisJob]) -> None:
    clinical, measurements = flagged_clinical(urgent=True), make_measurements()
    job = analysed_ecg(clinical=clinical, measurements=measurements)
    row = Prediction.objects.get(job=job, model_name="ecg-interpretation")
    assert row.model_version == "measure-1.1" and row.flagged and row.verdict == "abnormal" and row.urgency == "urgent"
    assert row.report_text == clinical.text and [f["code"] for f in row.findings] == ["AFIB", "CRBBB", "ISC_"]
    assert EcgMeasurements.from_json(row.measurements) == measurements
    assert row.report_details["decoder_removed"] == ["anteroseptal myocardial infarction"]
    assert row.input_provenance["waveform_sha256"] == job.recording.waveform_sha256
    assert row.input_provenance["model_outputs"] == {"ecg-anomaly-detector": "1.0.0", "ecg-foundation": "1.0.0"}
    before = Prediction.objects.count()
    analysis_results_store(job=job, result=with_interpretation(make_result(score=2.5), clinical))
    assert Prediction.objects.count() == before  # a redelivered job stores nothing twice


def test_it_stores_valid_r4b_result_resources_with_the_interpretation(
    analysed_ecg: Callable[..., AnalysisJob],
) -> None:
    measurements = make_measurements(qtc_ms=None, not_measured={"qtc_ms": "QT not measured"})
    job = analysed_ecg(clinical=flagged_clinical(urgent=True), measurements=measurements)
    links = list(ResultResource.objects.filter(job=job).select_related("resource"))
    for link in links:
        content = link.resource.content
        module = __import__(f"fhir.resources.R4B.{content['resourceType'].lower()}", fromlist=["x"])
        getattr(module, content["resourceType"]).model_validate(content)
        assert "urn:uuid" not in str(content)
    roles = {link.role for link in links}
    assert {"measurement-heart_rate_bpm", "measurement-qtc_ms", "st-j60", "finding-0", "review-task"} <= roles
    (qtc,) = stored(job, "measurement-qtc_ms")
    assert "valueQuantity" not in qtc and qtc["dataAbsentReason"]["coding"][0]["code"] == "not-performed"


def test_it_orders_the_worklist_urgent_first(analysed_ecg: Callable[..., AnalysisJob], auditor: Any) -> None:
    routine_high = analysed_ecg(score=3.0, clinical=flagged_clinical(), effective="2024-01-01T10:00:00Z")
    urgent_low = analysed_ecg(score=0.4, clinical=flagged_clinical(urgent=True), effective="2024-02-01T10:00:00Z")
    order = [r.job_id for r in worklist(user=auditor.user)]
    assert order == [urgent_low.pk, routine_high.pk]
    body = auditor.client.get("/admin/review/review/").content.decode()
    assert body.index("urgent") < body.index("routine")
    assert "Atrial fibrillation with rapid ventricular response" in body and "abnormal ECG" in body
    header = body.split("result_list")[1].split("</thead>")[0]
    assert "score ÷ operating point" in header.lower() and "priority" not in header.lower()


def test_it_shows_verdict_findings_measurements_and_decoder_text_on_the_review_page(
    analysed_ecg: Callable[..., AnalysisJob], clinician: Any
) -> None:
    measurements = make_measurements(pr_ms=None, not_measured={"pr_ms": "no P waves (atrial fibrillation)"})
    review = Review.objects.get(job=analysed_ecg(clinical=flagged_clinical(urgent=True), measurements=measurements))
    body = clinician.client.get(f"/admin/review/review/{review.pk}/change/").content.decode()
    assert 'id="verdict"' in body and "abnormal ECG" in body and "rv-urgent" in body
    assert "Complete right bundle branch block" in body and "qrs ms 132" in body  # a finding and its evidence
    assert "no P waves (atrial fibrillation)" in body and "Fridericia" in body and 'id="st-per-lead"' in body
    assert "V6: flat line" in body  # unusable lead and why
    assert "PVCs" in body and "PACs" in body
    draft = body.split('id="report-text">')[1].split("</textarea>")[0]
    assert draft.startswith("Atrial fibrillation with rapid ventricular response") and "anteroseptal" not in draft
    decoder = body.split('id="decoder"')[1]
    assert "Report model's raw text" in body and "sinus rhythm. anteroseptal myocardial infarction." in decoder
    assert "Statements removed from it" in decoder


def test_it_labels_the_reannotation_value_honestly(analysed_ecg: Callable[..., AnalysisJob], auditor: Any) -> None:
    analysed_ecg(score=2.5, clinical=normal_clinical(), review_priority=0.9)
    body = auditor.client.get("/admin/review/reannotationreview/").content.decode()
    header = body.split("result_list")[1].split("</thead>")[0]
    assert "re-annotation value" in header.lower() and "priority" not in header.lower() and "0.90" in body


def test_it_exports_the_interpretation_in_the_audit_and_counts_the_one_verdict(
    analysed_ecg: Callable[..., AnalysisJob], clinician: Any, auditor: Any
) -> None:
    review = Review.objects.get(job=analysed_ecg(score=0.4, clinical=flagged_clinical(urgent=True)))
    services.review_claim(review=review, user=clinician.user)
    services.review_accept(review=review, user=clinician.user)
    response = auditor.client.get("/admin/review/qualityprediction/export.csv")
    rows = {r["model_name"]: r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    interpretation = rows["ecg-interpretation"]
    assert interpretation["ai_verdict"] == "abnormal" and interpretation["urgency"] == "urgent"
    assert interpretation["verdict"] == "accept" and "CRBBB: " in interpretation["findings"]
    assert "qrs ms 132" in interpretation["findings"]
    assert rows["ecg-foundation"]["verdict"] == ""  # a verdict is not counted once per model
    from cds.review.metrics import quality_metrics

    # The reviewer confirmed the flag the interpretation raised (the detector alone did not flag it).
    metrics = quality_metrics(model_version="1.0.0", since=None, until=None, period="day")
    assert metrics.confusion == {"tp": 1, "fp": 0, "fn": 0, "tn": 0}
    page = auditor.client.get("/admin/review/qualityprediction/dashboard/").content.decode()
    # The detector section's version choice is per detector version; the interpretation's version is
    # reported in its own section (issue 19: the served verdict by subgroup).
    version_select = page.split('name="model_version"', 1)[1].split("</select>", 1)[0]
    assert "1.0.0" in version_select and "measure-1.1" not in version_select
    served = page.split('id="served-quality"', 1)[1].split("</table>", 1)[0]
    assert "<td>measure-1.1</td>" in served


def test_it_names_top_findings_and_key_measurements_on_the_card(
    analysed_ecg: Callable[..., AnalysisJob], service_account: Any
) -> None:
    long_text = Finding("X", "An abnormal finding with a very long name " * 4, None, "morphology", "measured", True)
    clinical = flagged_clinical(urgent=True)
    clinical = ClinicalReport(**{**clinical.__dict__, "findings": (*clinical.findings, long_text)})
    job = analysed_ecg(score=0.4, clinical=clinical)
    (card,) = hook_cards(service_account, job.recording.patient.logical_id)
    assert card["summary"].startswith("ECG 2024-03-01: URGENT Atrial fibrillation with rapid ventricular response")
    assert len(card["summary"]) <= 140
    assert "Complete right bundle branch block" in card["detail"] and "qrs ms 132" in card["detail"]
    assert "HR 72/min" in card["detail"] and "QT/QTc 384/402 ms (Fridericia)" in card["detail"]
    assert "Preliminary AI decision support" in card["detail"]


@pytest.mark.parametrize(("verdict", "codes"), [("accept", ["426783006", "713427006"]), ("reject", None)])
def test_it_keeps_the_ai_snomed_codes_on_signing_only_when_the_call_is_confirmed(
    analysed_ecg: Callable[..., AnalysisJob], senior_clinician: Any, verdict: str, codes: list[str] | None
) -> None:
    review = Review.objects.get(job=analysed_ecg(clinical=flagged_clinical()))
    user = senior_clinician.user
    services.review_claim(review=review, user=user)
    if verdict == "accept":
        services.review_accept(review=review, user=user)
    else:
        services.review_reject(review=review, user=user, reason="artefact")
    services.review_sign(review=review, user=user, password="pw-senior")
    link = ResultResource.objects.get(job=review.job, role="report")
    from cds.fhir.models import StoredResource

    report = StoredResource.objects.get(logical_id=link.resource.logical_id, is_current=True).content
    found = [c["coding"][0]["code"] for c in report["conclusionCode"]] if "conclusionCode" in report else None
    assert report["status"] == "final" and found == codes
