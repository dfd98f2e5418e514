"""Updates (issue 15): version-aware PUT of a Patient, and the retraction of an ECG, which cancels
its analysis, retracts its results in our store and queues the retraction to the EHR (outbox)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from cds.analysis.models import AnalysisJob
from cds.ecg.models import Patient
from cds.fhir.models import StoredResource
from cds.pipeline.analysis import analysis_results_store
from cds.writeback.models import OutboxMessage
from tests.cds.factories import make_result
from tests.conftest import OTHER_ORGANIZATION, FhirTestClient, api_client_token

pytestmark = pytest.mark.django_db


def put(client: FhirTestClient, path: str, body: dict[str, Any], **headers: str) -> Any:
    return client.client.put(path, json.dumps(body), content_type="application/fhir+json", **client.headers, **headers)


def test_patient_update_is_version_aware(service_account: Any, patient_resource: dict[str, Any]) -> None:
    created = service_account.post("/fhir/Patient", patient_resource).json()
    path = f"/fhir/Patient/{created['id']}"
    response = put(service_account, path, {**created, "gender": "male"}, HTTP_IF_MATCH='W/"1"')
    assert response.status_code == 200, response.content
    assert response["ETag"] == 'W/"2"' and response.json()["meta"]["versionId"] == "2"
    assert Patient.objects.get(logical_id=created["id"]).gender == "male"  # the demographics the models use
    stale = put(service_account, path, {**created, "gender": "other"}, HTTP_IF_MATCH='W/"1"')
    assert stale.status_code == 412 and stale.json()["issue"][0]["code"] == "conflict"
    assert service_account.get(path).json()["gender"] == "male"
    assert StoredResource.objects.filter(logical_id=created["id"]).count() == 2  # the stale PUT stored nothing


def test_update_refuses_a_mismatched_id_a_bad_etag_and_another_organisation(
    service_account: Any, client: Client, patient_resource: dict[str, Any]
) -> None:
    created = service_account.post("/fhir/Patient", patient_resource).json()
    path = f"/fhir/Patient/{created['id']}"
    response = put(service_account, path, {**created, "id": "other"})
    assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["Patient.id"]
    assert put(service_account, path, created, HTTP_IF_MATCH="abc").status_code == 400
    theirs = FhirTestClient(Client(), api_client_token(client, "system/*.cruds", OTHER_ORGANIZATION))
    assert put(theirs, path, {**created, "gender": "male"}).status_code == 404
    reader = FhirTestClient(Client(), api_client_token(client, "system/*.rs"))
    assert put(reader, path, {**created, "gender": "male"}).status_code == 403
    assert StoredResource.objects.filter(logical_id=created["id"]).count() == 1


@pytest.fixture
def analysed_ecg(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> dict[str, Any]:
    patient = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    ecg = service_account.post("/fhir/Observation", ecg_factory(9, patient_reference=f"Patient/{patient}")).json()
    job = AnalysisJob.objects.get(recording__logical_id=ecg["id"])
    with override_settings(WRITEBACK_ENABLED=True):
        analysis_results_store(job=job, result=make_result(score=2.5))
    return {"ecg": ecg, "job": job}


@override_settings(WRITEBACK_ENABLED=True)
def test_retracting_an_ecg_retracts_its_results_here_and_in_the_ehr(
    service_account: Any, analysed_ecg: dict[str, Any]
) -> None:
    ecg, job = analysed_ecg["ecg"], analysed_ecg["job"]
    response = put(
        service_account, f"/fhir/Observation/{ecg['id']}", {**ecg, "status": "entered-in-error"}, HTTP_IF_MATCH='W/"1"'
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "entered-in-error"
    results = StoredResource.objects.filter(is_current=True, resource_type__in=["DiagnosticReport", "Task"])
    assert results.count() >= 2 and {r.content["status"] for r in results} == {"entered-in-error"}
    derived = service_account.get(f"/fhir/Observation?derived-from=Observation/{ecg['id']}").json()
    assert derived["total"] > 0 and {e["resource"]["status"] for e in derived["entry"]} == {"entered-in-error"}
    sent, retraction = OutboxMessage.objects.order_by("sequence")
    assert sent.key == f"analysis-job:{job.pk}" and retraction.key == f"retraction:{job.pk}"
    assert retraction.ordering_key == sent.ordering_key and retraction.sequence > sent.sequence
    entries = retraction.bundle["entry"]
    assert {e["resource"]["status"] for e in entries} == {"entered-in-error"}
    assert all(e["request"]["method"] == "PUT" and "?identifier=" in e["request"]["url"] for e in entries)
    assert ecg["id"] not in str(retraction.bundle).replace(f"/fhir/Observation/{ecg['id']}", "")  # EHR refs only
    again = put(service_account, f"/fhir/Observation/{ecg['id']}", {**ecg, "status": "entered-in-error"})
    assert again.status_code == 200 and OutboxMessage.objects.count() == 2  # idempotent


def test_retracting_a_pending_ecg_cancels_its_analysis(service_account: Any, ecg_factory: Any) -> None:
    ecg = service_account.post("/fhir/Observation", ecg_factory(9)).json()
    assert (
        put(service_account, f"/fhir/Observation/{ecg['id']}", {**ecg, "status": "entered-in-error"}).status_code == 200
    )
    job = AnalysisJob.objects.get(recording__logical_id=ecg["id"])
    assert job.status == AnalysisJob.Status.CANCELLED
    # A worker that was already running stores nothing for a retracted ECG.
    assert analysis_results_store(job=job, result=make_result(score=2.5)) == []
    assert not StoredResource.objects.filter(resource_type="DiagnosticReport").exists()


def test_an_ecg_cannot_be_edited_nor_a_result_updated(service_account: Any, analysed_ecg: dict[str, Any]) -> None:
    ecg = analysed_ecg["ecg"]
    edited = put(
        service_account, f"/fhir/Observation/{ecg['id']}", {**ecg, "effectiveDateTime": "2020-01-01T00:00:00Z"}
    )
    assert edited.status_code == 422 and edited.json()["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
    final = put(service_account, f"/fhir/Observation/{ecg['id']}", {**ecg, "status": "amended"})
    assert final.status_code == 422 and final.json()["issue"][0]["expression"] == ["Observation.status"]
    assert StoredResource.objects.filter(logical_id=ecg["id"]).count() == 1
    result = StoredResource.objects.filter(resource_type="Observation", is_current=True).exclude(logical_id=ecg["id"])
    content = result.first().content  # type: ignore[union-attr]
    response = put(service_account, f"/fhir/Observation/{content['id']}", content)
    assert response.status_code == 405, response.content


def test_a_subsetted_search_result_cannot_be_sent_back(service_account: Any, ecg_factory: Any) -> None:
    ecg = service_account.post("/fhir/Observation", ecg_factory(9)).json()
    lean = service_account.get("/fhir/Observation?code=http://loinc.org|11524-6").json()["entry"][0]["resource"]
    response = put(service_account, f"/fhir/Observation/{ecg['id']}", {**lean, "status": "entered-in-error"})
    assert response.status_code == 422 and response.json()["issue"][0]["expression"] == ["Observation.meta.tag"]
    assert StoredResource.objects.filter(logical_id=ecg["id"]).count() == 1
