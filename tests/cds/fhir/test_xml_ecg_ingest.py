"""XML ECG documents (HL7 aECG, GE MUSE) through the HTTP stack: same stored ECG as the SampledData path, or nothing."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from cds.ecg.aecg import aecg_write
from cds.ecg.models import EcgRecording
from cds.ecg.muse import muse_write
from cds.fhir.models import StoredResource
from tests.conftest import LEADS_12, REPO_ROOT, read_sample_record

pytestmark = pytest.mark.django_db


def aecg_document(data: bytes, content_type: str = "text/xml") -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": content_type, "data": base64.b64encode(data).decode()}}],
    }


def test_it_stores_the_same_ecg_as_the_sampled_data_path(service_account: Any, ecg_factory: Any) -> None:
    samples, _ = read_sample_record(9)
    data = aecg_write(samples, sample_rate_hz=500, leads=LEADS_12, document_id="1.2.3.4.5", effective="20240301100000")
    response = service_account.post("/fhir/DocumentReference", aecg_document(data))
    assert response.status_code == 201, response.content
    document_id = response.json()["id"]
    assert {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4.5"} in response.json()["identifier"]
    search = service_account.get(f"/fhir/Observation?derived-from=DocumentReference/{document_id}").json()
    from_aecg = EcgRecording.objects.get(logical_id=search["entry"][0]["resource"]["id"])
    sampled = service_account.post("/fhir/Observation", ecg_factory(9))
    from_sampled = EcgRecording.objects.get(logical_id=sampled.json()["id"])
    np.testing.assert_array_equal(from_aecg.waveform(), from_sampled.waveform())
    assert from_aecg.waveform_sha256 == from_sampled.waveform_sha256
    # No UTC offset in the aECG time: the date is kept, the unknown-zone time is not invented.
    assert from_aecg.resource.content["effectiveDateTime"] == "2024-03-01"


def test_a_short_recording_is_refused_with_the_reason_and_nothing_stored(service_account: Any) -> None:
    samples, _ = read_sample_record(9)
    data = aecg_write(samples[:, :500], sample_rate_hz=500, leads=LEADS_12)
    before = StoredResource.objects.count()
    response = service_account.post("/fhir/DocumentReference", aecg_document(data, "application/xml"))
    assert response.status_code == 422, response.content
    issue = response.json()["issue"][0]
    assert issue["diagnostics"].startswith("decoded hl7-aecg document: recording lasts 1.00 s")
    assert issue["expression"] == ["DocumentReference.content[0].attachment.data"]
    assert StoredResource.objects.count() == before


def test_a_muse_document_gives_a_twelve_lead_ecg_with_the_document_demographics(service_account: Any) -> None:
    samples, _ = read_sample_record(9)
    muse_leads = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    data = muse_write(
        samples[[LEADS_12.index(lead) for lead in muse_leads]],
        sample_rate_hz=500,
        leads=muse_leads,
        gender="MALE",
        date_of_birth="01-31-1950",
        acquisition_date="03-01-2024",
    )
    response = service_account.post("/fhir/DocumentReference", aecg_document(data, "application/xml"))
    assert response.status_code == 201, response.content
    search = service_account.get(f"/fhir/Observation?derived-from=DocumentReference/{response.json()['id']}").json()
    recording = EcgRecording.objects.get(logical_id=search["entry"][0]["resource"]["id"])
    assert recording.leads == list(LEADS_12) and recording.n_samples == 5000
    assert recording.sex == "male" and 74.0 < recording.age_min_years <= recording.age_max_years < 74.2


def test_a_philips_document_is_stored_as_a_twelve_lead_ecg(service_account: Any) -> None:
    sample = REPO_ROOT / "samples" / "philips" / "129DYPRG.xml"
    response = service_account.post("/fhir/DocumentReference", aecg_document(sample.read_bytes()))
    assert response.status_code == 201, response.content
    search = service_account.get(f"/fhir/Observation?derived-from=DocumentReference/{response.json()['id']}").json()
    recording = EcgRecording.objects.get(logical_id=search["entry"][0]["resource"]["id"])
    assert recording.leads == list(LEADS_12) and recording.n_samples == 5500 and recording.sex == "male"
