"""Transaction and batch Bundles at ``POST /fhir``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds.analysis.models import AnalysisJob
from cds.ecg.encoding import ecg_transaction_bundle
from cds.ecg.models import EcgRecording, Patient
from cds.fhir.models import StoredResource

pytestmark = pytest.mark.django_db


def test_it_creates_patient_and_ecg_resolving_urn_uuid(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    bundle = ecg_transaction_bundle(patient=patient_resource, observation=ecg_factory(63))
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "transaction-response"
    statuses = [entry["response"]["status"] for entry in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_location = body["entry"][0]["response"]["location"]
    recording = EcgRecording.objects.get()
    assert recording.patient is not None
    assert patient_location.startswith(f"Patient/{recording.patient.logical_id}/")
    assert recording.resource.content["subject"]["reference"] == f"Patient/{recording.patient.logical_id}"
    assert recording.sex == "female"


def test_it_creates_nothing_new_when_a_bundle_is_replayed(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    bundle = ecg_transaction_bundle(patient=patient_resource, observation=ecg_factory(63, identifier="replay-1"))
    first = service_account.post("/fhir", copy.deepcopy(bundle)).json()
    second = service_account.post("/fhir", copy.deepcopy(bundle)).json()
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK", "200 OK"]
    assert [e["response"]["location"] for e in first["entry"]] == [e["response"]["location"] for e in second["entry"]]
    assert (Patient.objects.count(), EcgRecording.objects.count(), AnalysisJob.objects.count()) == (1, 1, 1)


def test_it_rolls_back_the_whole_transaction_when_one_entry_fails(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    bad = ecg_factory(63)
    bad["component"][5]["valueSampledData"]["data"] += " x"
    bundle = ecg_transaction_bundle(patient=patient_resource, observation=bad)
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.component[5].valueSampledData.data"]
    assert StoredResource.objects.count() == 0 and AnalysisJob.objects.count() == 0


def test_it_rolls_back_when_a_late_entry_fails_in_the_database_phase(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    observation = ecg_factory(63)
    bundle = ecg_transaction_bundle(patient=patient_resource, observation=observation)
    bundle["entry"][1]["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    # The Patient entry was created first inside the transaction, then rolled back.
    assert StoredResource.objects.count() == 0 and Patient.objects.count() == 0


def test_it_applies_batch_entries_independently(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    bad = ecg_factory(9)
    bad["component"][0]["valueSampledData"]["period"] = 0.01  # 100 kHz: outside 100–1000 Hz
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient_resource, "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
            {"resource": ecg_factory(38), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 200, response.content
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "422", "201 Created"]
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"][0].startswith(
        "Bundle.entry[1].resource.component["
    )
    assert EcgRecording.objects.count() == 1 and Patient.objects.count() == 1


@pytest.mark.parametrize(
    ("mutate", "status", "expression"),
    [
        (lambda b: b.update(type="collection"), 422, "Bundle.type"),
        (lambda b: b["entry"][0]["request"].update(method="DELETE"), 422, "Bundle.entry[0].request.method"),
        (lambda b: b["entry"][1]["request"].update(url="Patient"), 400, "Bundle.entry[1].resource.resourceType"),
        (lambda b: b.update(entry=[]), 400, "Bundle.entry"),
    ],
)
def test_it_refuses_malformed_bundles(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any], mutate: Any, status: int, expression: str
) -> None:
    bundle = ecg_transaction_bundle(patient=patient_resource, observation=ecg_factory(9))
    mutate(bundle)
    response = service_account.post("/fhir", bundle)
    assert response.status_code == status, response.content
    assert expression in response.json()["issue"][0]["expression"]
    assert StoredResource.objects.count() == 0
