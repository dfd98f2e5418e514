"""Storing an analysis result: predictions, FHIR result resources on our API, the write-back Bundle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle

from cds.analysis.fhir_results import result_entries, transaction_bundle
from cds.analysis.models import AnalysisJob, Prediction, ResultResource
from cds.fhir.models import StoredResource
from cds.pipeline.analysis import analysis_results_store
from tests.cds.factories import make_result

__all__ = ["make_result"]  # imported from here by other tests

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> tuple[AnalysisJob, str]:
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    ecg_id = service_account.post(
        "/fhir/Observation", ecg_factory(63, patient_reference=f"Patient/{patient_id}")
    ).json()["id"]
    job = AnalysisJob.objects.get(recording__logical_id=ecg_id)
    analysis_results_store(job=job, result=make_result(score=2.5))
    return job, ecg_id


def test_it_stores_one_prediction_per_model_with_provenance(analysed: tuple[AnalysisJob, str]) -> None:
    job, ecg_id = analysed
    detector, foundation = Prediction.objects.filter(job=job).order_by("model_name")
    assert detector.model_name == "ecg-anomaly-detector" and detector.flagged and detector.score == 2.5
    assert detector.input_provenance["observation"] == f"Observation/{ecg_id}"
    assert len(detector.input_provenance["waveform_sha256"]) == 64
    restored = np.frombuffer(bytes(detector.anomaly_map), dtype="<f2").reshape(12, 250)
    assert abs(float(restored[-1, -1]) - 1.0) < 1e-3
    assert foundation.report_text.startswith("sinus rhythm") and foundation.probabilities["MI"] == 0.7


def test_it_is_idempotent_for_a_redelivered_job(analysed: tuple[AnalysisJob, str]) -> None:
    job, _ = analysed
    before = (Prediction.objects.count(), StoredResource.objects.count())
    analysis_results_store(job=job, result=make_result(score=2.5))
    assert (Prediction.objects.count(), StoredResource.objects.count()) == before


def test_it_serves_the_write_back_set_on_our_fhir_api(service_account: Any, analysed: tuple[AnalysisJob, str]) -> None:
    job, ecg_id = analysed
    derived = service_account.get(f"/fhir/Observation?derived-from=Observation/{ecg_id}").json()
    codes = sorted(e["resource"]["code"]["coding"][0]["code"] for e in derived["entry"])
    assert codes == ["anomaly-interval", "anomaly-interval", "anomaly-score"]
    score = next(
        e["resource"] for e in derived["entry"] if e["resource"]["code"]["coding"][0]["code"] == "anomaly-score"
    )
    assert score["valueQuantity"]["value"] == 2.5
    assert score["interpretation"][0]["coding"][0]["code"] == "A"
    assert score["meta"]["security"][0]["code"] == "AIAST"
    assert len(score["component"]) == 12
    reports = service_account.get(f"/fhir/DiagnosticReport?result=Observation/{score['id']}").json()
    assert reports["total"] == 1
    report = reports["entry"][0]["resource"]
    assert report["status"] == "preliminary" and report["conclusion"].startswith("sinus rhythm")
    tasks = service_account.get(f"/fhir/Task?focus=DiagnosticReport/{report['id']}").json()
    assert tasks["total"] == 1 and tasks["entry"][0]["resource"]["code"]["coding"][0]["code"] == "approve"
    provenance = service_account.get(f"/fhir/Provenance/ecgcds-job-{job.writeback_uuid}").json()
    assert provenance["entity"][0]["what"] == {"reference": f"Observation/{ecg_id}"}
    device_ref = provenance["agent"][0]["who"]["reference"]
    assert service_account.get(f"/fhir/{device_ref}").status_code == 200
    # Every stored result resource is valid R4 and references only resources on this server.
    for link in ResultResource.objects.filter(job=job).select_related("resource"):
        content = link.resource.content
        module = __import__(f"fhir.resources.R4B.{content['resourceType'].lower()}", fromlist=["x"])
        getattr(module, content["resourceType"]).model_validate(content)
        assert "urn:uuid" not in str(content)


def test_it_does_not_create_a_task_below_the_operating_point(service_account: Any, ecg_factory: Any) -> None:
    ecg_id = service_account.post("/fhir/Observation", ecg_factory(9)).json()["id"]
    job = AnalysisJob.objects.get(recording__logical_id=ecg_id)
    analysis_results_store(job=job, result=make_result(score=0.4, intervals=0))
    assert not Prediction.objects.get(job=job, model_name="ecg-anomaly-detector").flagged
    assert set(ResultResource.objects.filter(job=job).values_list("role", flat=True)) == {
        "device",
        "anomaly-score",
        "report",
        "provenance",
    }


def test_it_refuses_client_writes_to_result_types(service_account: Any) -> None:
    response = service_account.post("/fhir/Task", {"resourceType": "Task", "status": "requested", "intent": "order"})
    assert response.status_code == 405 and response.json()["issue"][0]["code"] == "not-supported"


def test_it_builds_a_valid_r4_transaction_bundle_for_the_ehr() -> None:
    ecg = {"reference": "http://cds.example/fhir/Observation/1", "identifier": {"system": "urn:ecg", "value": "e-1"}}
    bundle = transaction_bundle(
        result_entries(make_result(score=3.0), job_key="job-7", ecg=ecg, patient=None, issued="2024-01-01T00:00:00Z")
    )
    Bundle.model_validate(bundle)
    methods = [(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"]]
    assert methods[-1] == ("PUT", "Provenance/ecgcds-job-7")
    assert all("ifNoneExist" in e["request"] for e in bundle["entry"] if e["request"]["method"] == "POST")
    assert all("#" not in e["request"].get("ifNoneExist", "") for e in bundle["entry"])
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    task = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task")
    assert task["focus"]["reference"] in full_urls
