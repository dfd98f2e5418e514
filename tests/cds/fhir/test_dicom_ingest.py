"""ECG documents through the HTTP stack: a DICOM ECG as a DocumentReference (real PostgreSQL)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from django.test import Client

from cds.analysis.models import AnalysisJob, Prediction
from cds.ecg.dicom_ecg import dicom_ecg_write
from cds.ecg.models import EcgRecording
from cds.fhir.models import StoredResource
from cds.pipeline.tasks import analysis_job_run
from tests.conftest import LEADS_12, OTHER_ORGANIZATION, FhirTestClient, api_client_token, read_sample_record

pytestmark = pytest.mark.django_db


def dicom_document(
    data: bytes, *, subject: str | None = None, content_type: str = "application/dicom"
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11524-6"}]},
        "content": [{"attachment": {"contentType": content_type, "data": base64.b64encode(data).decode()}}],
    }
    if subject:
        document["subject"] = {"reference": subject}
    return document


def dicom_ecg(ecg_id: int = 9, **kwargs: Any) -> bytes:
    samples, _ = read_sample_record(ecg_id)
    kwargs.setdefault("acquisition", "20240301100000+0000")
    return dicom_ecg_write(samples, sample_rate_hz=500, leads=LEADS_12, **kwargs)


def derived_recording(service_account: Any, document_id: str) -> EcgRecording:
    search = service_account.get(f"/fhir/Observation?derived-from=DocumentReference/{document_id}").json()
    assert search["total"] == 1
    return EcgRecording.objects.get(logical_id=search["entry"][0]["resource"]["id"])


def test_it_stores_the_document_and_the_same_ecg_and_analysis_as_the_sampled_data_path(
    service_account: Any, ecg_factory: Any
) -> None:
    response = service_account.post("/fhir/DocumentReference", dicom_document(dicom_ecg(9)))
    assert response.status_code == 201, response.content
    assert response.json()["resourceType"] == "DocumentReference"
    from_dicom = derived_recording(service_account, response.json()["id"])
    sampled = service_account.post("/fhir/Observation", ecg_factory(9))
    assert sampled.status_code == 201, sampled.content
    from_sampled = EcgRecording.objects.get(logical_id=sampled.json()["id"])
    # Same samples, bit for bit, so the same analysis input.
    assert from_dicom.leads == from_sampled.leads == list(LEADS_12)
    assert from_dicom.sample_rate_hz == from_sampled.sample_rate_hz == 500
    np.testing.assert_array_equal(from_dicom.waveform(), from_sampled.waveform())
    assert from_dicom.waveform_sha256 == from_sampled.waveform_sha256
    observation = from_dicom.resource.content
    assert observation["derivedFrom"] == [{"reference": f"DocumentReference/{response.json()['id']}"}]
    assert observation["effectiveDateTime"] == "2024-03-01T10:00:00+00:00"
    for recording in (from_dicom, from_sampled):
        job = AnalysisJob.objects.get(recording=recording)
        assert analysis_job_run(job.pk) == "succeeded"
    scores = [
        Prediction.objects.get(recording=r, model_name="ecg-anomaly-detector").score for r in (from_dicom, from_sampled)
    ]
    assert scores[0] is not None and scores[0] == pytest.approx(scores[1], rel=1e-6)


def test_it_takes_demographics_from_the_document_where_the_patient_lacks_them(service_account: Any) -> None:
    bare = service_account.post("/fhir/Patient", {"resourceType": "Patient", "gender": "male"})
    assert bare.status_code == 201
    data = dicom_ecg(9, patient_sex="F", patient_birth_date="19680512")
    response = service_account.post(
        "/fhir/DocumentReference", dicom_document(data, subject=f"Patient/{bare.json()['id']}")
    )
    assert response.status_code == 201, response.content
    recording = derived_recording(service_account, response.json()["id"])
    # The Patient's own gender wins; its missing birthDate comes from the document (55.8 years at the ECG).
    assert recording.sex == "male"
    assert recording.patient is not None and recording.patient.logical_id == bare.json()["id"]
    assert 55.7 < recording.age_min_years <= recording.age_max_years < 55.9
    assert recording.resource.content["subject"] == {"reference": f"Patient/{bare.json()['id']}"}


def test_a_resent_document_is_matched_by_its_sop_instance_uid_and_stores_nothing_new(service_account: Any) -> None:
    data = dicom_ecg(9)
    first = service_account.post("/fhir/DocumentReference", dicom_document(data))
    assert first.status_code == 201, first.content
    assert {"system": "urn:dicom:uid", "value": first.json()["identifier"][0]["value"]} in first.json()["identifier"]
    counts = StoredResource.objects.count(), AnalysisJob.objects.count()
    again = service_account.post("/fhir/DocumentReference", dicom_document(data))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert (StoredResource.objects.count(), AnalysisJob.objects.count()) == counts


def test_it_ingests_a_dicom_document_inside_a_transaction_bundle(service_account: Any, patient_resource: Any) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": patient_resource, "request": {"method": "POST", "url": "Patient"}},
            {
                "fullUrl": "urn:uuid:d1",
                "resource": dicom_document(dicom_ecg(9), subject="urn:uuid:p1"),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 200, response.content
    location = response.json()["entry"][1]["response"]["location"]
    document_id = location.split("DocumentReference/")[1].split("/")[0]
    recording = derived_recording(service_account, document_id)
    assert recording.patient is not None and recording.sex == "female"


@pytest.mark.parametrize(
    ("document", "status", "expression", "words"),
    [
        (lambda: dicom_document(b"not dicom at all"), 400, "attachment.data", "not a readable DICOM"),
        (lambda: dicom_document(dicom_ecg(9), content_type="image/png"), 422, "attachment.contentType", "image/png"),
        (
            lambda: dicom_document(dicom_ecg(9, transfer_syntax="1.2.840.10008.1.2.4.50")),
            422,
            "attachment.data",
            "TransferSyntaxUID 1.2.840.10008.1.2.4.50",
        ),
        (
            lambda: dicom_document(
                dicom_ecg(9, group_WaveformBitsAllocated=8, group_WaveformSampleInterpretation="AB")
            ),
            422,
            "attachment.data",
            "A-law companded",
        ),
        (
            lambda: dicom_document(dicom_ecg(9, group_SamplingFrequency="20000")),
            422,
            "attachment.data",
            "decoded dicom document: sampling rate 20000 Hz",
        ),
        (
            lambda: dicom_document(dicom_ecg(9), subject="Patient/nobody"),
            422,
            "Observation.subject",
            "does not resolve",
        ),
    ],
)
def test_bad_documents_get_an_operation_outcome_naming_the_problem_and_store_nothing(
    service_account: Any, document: Any, status: int, expression: str, words: str
) -> None:
    before = StoredResource.objects.count()
    response = service_account.post("/fhir/DocumentReference", document())
    assert response.status_code == status, response.content
    issue = response.json()["issue"][0]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert words in issue["diagnostics"] and issue["expression"][0].endswith(expression)
    assert StoredResource.objects.count() == before


def test_an_attachment_by_url_is_refused_because_the_service_never_fetches(service_account: Any) -> None:
    document = dicom_document(b"")
    document["content"][0]["attachment"] = {"contentType": "application/dicom", "url": "http://pacs.example/ecg.dcm"}
    response = service_account.post("/fhir/DocumentReference", document)
    assert response.status_code == 422
    assert "never fetches" in response.json()["issue"][0]["diagnostics"]


def test_it_accepts_an_observation_coded_loinc_34534_8(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(9)
    observation["code"] = {
        "coding": [{"system": "http://loinc.org", "code": "34534-8", "display": "12 lead EKG panel"}]
    }
    response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    observation["code"] = {"coding": [{"system": "http://loinc.org", "code": "8601-7"}]}
    observation["identifier"] = [{"system": "urn:oid:1.2.3.4.ecg", "value": "other"}]
    refused = service_account.post("/fhir/Observation", observation)
    assert refused.status_code == 422 and "34534-8" in refused.json()["issue"][0]["diagnostics"]


def test_a_document_cannot_attach_an_ecg_to_another_organisations_patient(service_account: Any, client: Any) -> None:
    other = FhirTestClient(Client(), api_client_token(client, "system/*.cruds", organization=OTHER_ORGANIZATION))
    theirs = other.post("/fhir/Patient", {"resourceType": "Patient", "gender": "female"})
    assert theirs.status_code == 201
    before = StoredResource.objects.count()
    response = service_account.post(
        "/fhir/DocumentReference", dicom_document(dicom_ecg(9), subject=f"Patient/{theirs.json()['id']}")
    )
    assert response.status_code == 422 and "does not resolve" in response.json()["issue"][0]["diagnostics"]
    assert StoredResource.objects.count() == before
