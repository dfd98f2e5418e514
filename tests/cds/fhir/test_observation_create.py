"""Creating ECG Observations through the HTTP stack (Django test client, real PostgreSQL)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from cds.analysis.models import AnalysisJob
from cds.ecg.models import EcgRecording
from cds.fhir.models import StoredResource
from tests.conftest import read_sample_record

pytestmark = pytest.mark.django_db


def create_patient(fhir: Any, patient: dict[str, Any]) -> str:
    response = fhir.post("/fhir/Patient", patient)
    assert response.status_code == 201, response.content
    return f"Patient/{response.json()['id']}"


def test_it_creates_an_ecg_with_headers_job_and_enqueue_after_commit(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    patient_ref = create_patient(service_account, patient_resource)
    observation = ecg_factory(9, patient_reference=patient_ref)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response["Location"] == f"http://testserver/fhir/Observation/{body['id']}/_history/1"
    assert response["ETag"] == 'W/"1"'
    assert "Last-Modified" in response
    assert body["meta"]["versionId"] == "1"
    recording = EcgRecording.objects.get(logical_id=body["id"])
    assert recording.leads == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert recording.sample_rate_hz == 500 and recording.n_samples == 5000
    assert recording.sex == "female"
    # birthDate 1968-05 and an ECG on 2024-03-01: between 55.8 and 55.9 years old.
    assert 55.7 < recording.age_min_years < recording.age_max_years < 55.9
    job = AnalysisJob.objects.get(recording=recording)
    assert job.status == AnalysisJob.Status.PENDING
    assert len(callbacks) == 1


def test_it_round_trips_a_ptbxl_waveform_within_quantization(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    source, _ = read_sample_record(65)
    response = service_account.post("/fhir/Observation", ecg_factory(65, resolution_uv=1.0))
    assert response.status_code == 201, response.content
    stored = EcgRecording.objects.get(logical_id=response.json()["id"]).waveform()
    assert stored.shape == source.shape
    # PTB-XL digitizes in 1 µV steps, so the 1 µV encoding is exact; allow half a step anyway.
    assert np.max(np.abs(stored - source)) <= 0.5


def test_it_reads_and_vreads_what_it_stored(service_account: Any, ecg_factory: Any) -> None:
    created = service_account.post("/fhir/Observation", ecg_factory(38)).json()
    read = service_account.get(f"/fhir/Observation/{created['id']}")
    assert read.status_code == 200
    assert (
        read.json()["component"][0]["valueSampledData"]["data"] == created["component"][0]["valueSampledData"]["data"]
    )
    assert read["ETag"] == 'W/"1"'
    vread = service_account.get(f"/fhir/Observation/{created['id']}/_history/1")
    assert vread.status_code == 200 and vread.json()["id"] == created["id"]
    missing = service_account.get(f"/fhir/Observation/{created['id']}/_history/2")
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["code"] == "not-found"


def test_it_answers_304_when_the_etag_matches(service_account: Any, ecg_factory: Any) -> None:
    created = service_account.post("/fhir/Observation", ecg_factory(38)).json()
    response = service_account.get(f"/fhir/Observation/{created['id']}", HTTP_IF_NONE_MATCH='W/"1"')
    assert response.status_code == 304


def test_it_does_not_store_a_conditional_duplicate(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(57, identifier="dup-1")
    condition = "identifier=urn:oid:1.2.3.4.ecg|dup-1"
    first = service_account.post("/fhir/Observation", observation, HTTP_IF_NONE_EXIST=condition)
    second = service_account.post("/fhir/Observation", copy.deepcopy(observation), HTTP_IF_NONE_EXIST=condition)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert StoredResource.objects.filter(resource_type="Observation").count() == 1
    assert AnalysisJob.objects.count() == 1


def test_it_accepts_plain_application_json(service_account: Any, ecg_factory: Any) -> None:
    response = service_account.post("/fhir/Observation", ecg_factory(9), content_type="application/json")
    assert response.status_code == 201


def test_it_accepts_a_subset_of_leads_at_100_hz_in_chunks(service_account: Any) -> None:
    from cds.ecg.encoding import ecg_observation

    samples, _ = read_sample_record(9, rate=100)
    observation = ecg_observation(samples[[0, 1]], sample_rate_hz=100, leads=["I", "II"])
    # Split lead II into two chunks: components of one lead are concatenated in order.
    lead_two = observation["component"][1]
    values = lead_two["valueSampledData"]["data"].split(" ")
    first, second = copy.deepcopy(lead_two), copy.deepcopy(lead_two)
    first["valueSampledData"]["data"] = " ".join(values[:400])
    second["valueSampledData"]["data"] = " ".join(values[400:])
    observation["component"] = [observation["component"][0], first, second]
    response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    recording = EcgRecording.objects.get(logical_id=response.json()["id"])
    assert recording.leads == ["I", "II"] and recording.sample_rate_hz == 100
    np.testing.assert_allclose(recording.waveform(), np.rint(samples[[0, 1]]), atol=0.5)


def test_it_converts_millivolts_and_interleaved_dimensions(service_account: Any) -> None:
    samples = (np.sin(np.linspace(0, 60, 2000)) * 1000).round()  # µV, 4 s at 500 Hz
    data = " ".join(f"{v / 1000:.3f} {-v / 1000:.3f}" for v in samples)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6"}]},
        "component": [
            {
                "code": {
                    "coding": [
                        {"system": "urn:iso:std:iso:11073:10101", "code": "131329"},
                        {"system": "urn:iso:std:iso:11073:10101", "code": "131330"},
                    ]
                },
                "valueSampledData": {"origin": {"value": 0, "unit": "mV"}, "period": 2, "dimensions": 2, "data": data},
            }
        ],
    }
    response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    waveform = EcgRecording.objects.get(logical_id=response.json()["id"]).waveform()
    np.testing.assert_allclose(waveform[0], samples, atol=0.51)
    np.testing.assert_allclose(waveform[1], -samples, atol=0.51)
