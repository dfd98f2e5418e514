"""Organisations (tenants): one organisation's client never reads, finds, matches or references another's data.

Each FHIR interaction (read, vread, search, create with a subject reference, conditional create,
transaction and batch Bundle entries), CDS Hooks and the review worklist are checked from the other
organisation's side, on the real PostgreSQL store.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.test import Client

from cds.analysis.models import AnalysisJob
from cds.core.models import Organization
from cds.ecg.models import EcgRecording, Patient
from cds.fhir.models import StoredResource
from cds.pipeline.analysis import analysis_results_store
from cds.review.models import CareTeam, CareTeamSource, Review
from tests.cds.factories import make_result
from tests.conftest import ORGANIZATION, OTHER_ORGANIZATION, FhirTestClient, Persona, api_client_token

pytestmark = pytest.mark.django_db

MRN = "urn:oid:1.2.3.4.mrn|MRN-0001"


@pytest.fixture
def other_org(client: Client) -> FhirTestClient:
    """Persona: another hospital's integration engine, with every scope, in organisation org-b."""
    return FhirTestClient(Client(), api_client_token(client, "system/*.cruds", OTHER_ORGANIZATION))


@pytest.fixture
def ours(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> dict[str, str]:
    """Org-a's Patient and its analysed ECG (with result resources), sent by org-a's client."""
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    observation = ecg_factory(63, identifier="ecg-63", patient_reference=f"Patient/{patient_id}")
    response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    job = AnalysisJob.objects.select_related("recording").get(recording__logical_id=response.json()["id"])
    analysis_results_store(job=job, result=make_result(score=2.5))
    report = StoredResource.objects.get(resource_type="DiagnosticReport", is_current=True)
    return {"patient": patient_id, "observation": response.json()["id"], "report": report.logical_id}


def test_it_stores_everything_in_the_senders_organization(ours: dict[str, str]) -> None:
    org_a = Organization.objects.get(slug=ORGANIZATION)
    assert {r.organization_id for r in StoredResource.objects.all()} == {org_a.pk}  # results too
    assert Patient.objects.get().organization_id == org_a.pk
    assert EcgRecording.objects.get().organization_id == org_a.pk


@pytest.mark.parametrize(
    ("resource_type", "key"), [("Patient", "patient"), ("Observation", "observation"), ("DiagnosticReport", "report")]
)
def test_it_answers_not_found_to_another_organizations_read(
    service_account: Any, other_org: FhirTestClient, ours: dict[str, str], resource_type: str, key: str
) -> None:
    path = f"/fhir/{resource_type}/{ours[key]}"
    assert service_account.get(path).status_code == 200
    response = other_org.get(path)
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"
    # The same answer as for an id that never existed: the id's existence does not leak.
    assert other_org.get(f"/fhir/{resource_type}/nope").json()["issue"][0]["code"] == "not-found"


def test_it_answers_not_found_to_another_organizations_vread(
    service_account: Any, other_org: FhirTestClient, ours: dict[str, str]
) -> None:
    path = f"/fhir/Patient/{ours['patient']}/_history/1"
    assert service_account.get(path).status_code == 200
    assert other_org.get(path).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        f"Patient?identifier={MRN}",
        "Patient?_id={patient}",
        "Patient?gender=female",
        "Observation?subject=Patient/{patient}",
        "Observation?patient={patient}",
        "Observation?identifier=urn:oid:1.2.3.4.ecg|ecg-63",
        "Observation?code=http://loinc.org|11524-6",
        "DiagnosticReport?subject=Patient/{patient}",
        "Task?patient={patient}",
        "Provenance?target=DiagnosticReport/{report}",
        "Device",
    ],
)
def test_it_finds_nothing_of_another_organization_in_a_search(
    service_account: Any, other_org: FhirTestClient, ours: dict[str, str], query: str
) -> None:
    path = "/fhir/" + query.format(**ours)
    mine = service_account.get(path).json()
    assert mine["total"] >= 1, path  # the query does find org-a's data for org-a
    theirs = other_org.get(path).json()
    assert (theirs["total"], theirs.get("entry", [])) == (0, [])


def test_it_refuses_an_observation_whose_subject_is_another_organizations_patient(
    other_org: FhirTestClient, ours: dict[str, str], ecg_factory: Any
) -> None:
    observation = ecg_factory(9, identifier="theirs-9", patient_reference=f"Patient/{ours['patient']}")
    response = other_org.post("/fhir/Observation", observation)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-found" and issue["expression"] == ["Observation.subject"]
    assert EcgRecording.objects.count() == 1  # nothing stored


def test_it_never_matches_another_organizations_resource_in_a_conditional_create(
    other_org: FhirTestClient, ours: dict[str, str], patient_resource: dict[str, Any]
) -> None:
    response = other_org.post("/fhir/Patient", patient_resource, HTTP_IF_NONE_EXIST=f"identifier={MRN}")
    assert response.status_code == 201  # a new Patient of org-b, not org-a's
    assert response.json()["id"] != ours["patient"]
    org_b = Organization.objects.get(slug=OTHER_ORGANIZATION)
    assert Patient.objects.get(logical_id=response.json()["id"]).organization_id == org_b.pk


def _bundle(bundle_type: str, patient: dict[str, Any], observation: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": bundle_type,
        "entry": [
            {
                "fullUrl": "urn:uuid:0a8f6f4e-6c2e-4d4b-9d1e-3f5b2c1a7e01",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}"},
            },
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def test_it_keeps_transaction_bundle_entries_inside_the_organization(
    other_org: FhirTestClient, ours: dict[str, str], patient_resource: dict[str, Any], ecg_factory: Any
) -> None:
    observation = ecg_factory(
        9, identifier="theirs-9", patient_reference="urn:uuid:0a8f6f4e-6c2e-4d4b-9d1e-3f5b2c1a7e01"
    )
    response = other_org.post("/fhir", _bundle("transaction", copy.deepcopy(patient_resource), observation))
    assert response.status_code == 200, response.content
    created = response.json()["entry"]
    # The ifNoneExist on org-a's MRN does not match org-a's Patient: org-b gets its own.
    assert created[0]["response"]["status"] == "201 Created"
    assert ours["patient"] not in created[0]["response"]["location"]
    recording = EcgRecording.objects.get(logical_id=created[1]["response"]["location"].split("/")[1])
    assert recording.patient is not None and recording.patient.logical_id != ours["patient"]


def test_it_refuses_a_transaction_entry_referencing_another_organizations_patient(
    other_org: FhirTestClient, ours: dict[str, str], patient_resource: dict[str, Any], ecg_factory: Any
) -> None:
    observation = ecg_factory(9, identifier="theirs-9", patient_reference=f"Patient/{ours['patient']}")
    response = other_org.post("/fhir", _bundle("transaction", copy.deepcopy(patient_resource), observation))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject"]
    assert Patient.objects.count() == 1 and EcgRecording.objects.count() == 1  # all or nothing


def test_it_refuses_a_batch_entry_referencing_another_organizations_patient(
    other_org: FhirTestClient, ours: dict[str, str], patient_resource: dict[str, Any], ecg_factory: Any
) -> None:
    observation = ecg_factory(9, identifier="theirs-9", patient_reference=f"Patient/{ours['patient']}")
    response = other_org.post("/fhir", _bundle("batch", copy.deepcopy(patient_resource), observation))
    assert response.status_code == 200
    first, second = (e["response"] for e in response.json()["entry"])
    assert first["status"] == "201 Created" and ours["patient"] not in first["location"]
    assert second["status"] == "422"
    assert EcgRecording.objects.count() == 1


def _hook(patient_id: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
        "prefetch": prefetch or {},
    }


def test_it_shows_no_cards_of_another_organizations_patient(
    service_account: Any, other_org: FhirTestClient, ours: dict[str, str]
) -> None:
    by_mrn = {
        "patient": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"}]}
    }
    for request in (_hook(ours["patient"]), _hook("ehr-1", by_mrn)):
        mine = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json")
        assert len(mine.json()["cards"]) == 1
        theirs = other_org.post("/cds-services/ecg-ai-findings", request, content_type="application/json")
        assert theirs.status_code == 200 and theirs.json() == {"cards": []}


def test_it_hides_another_organizations_ecgs_from_a_care_team_with_the_same_source_name(
    clinician: Persona, ours: dict[str, str]
) -> None:
    EcgRecording.objects.update(received_from="ward-a")
    review = Review.objects.get()
    assert clinician.client.get(f"/admin/review/review/{review.pk}/change/").status_code == 200
    from django.contrib.auth import get_user_model

    from tests.conftest import _persona

    outsider = _persona("org-b-clinician", "clinician")
    team = CareTeam.objects.create(
        name="org-b ward-a", organization=Organization.objects.create(slug=OTHER_ORGANIZATION, name="B")
    )
    CareTeamSource.objects.create(team=team, source="ward-a")  # same ward name, other hospital
    team.members.add(get_user_model().objects.get(username="org-b-clinician"))
    listing = outsider.client.get("/admin/review/review/").content.decode()
    assert f"Review {review.pk}" not in listing and "pending <b>0</b>" in listing
    assert outsider.client.get(f"/admin/review/review/{review.pk}/change/").status_code == 403


def test_it_shows_a_whole_organizations_ecgs_to_a_care_team_listing_no_sources(ours: dict[str, str]) -> None:
    from tests.conftest import _persona

    member = _persona("org-a-cardiology", "clinician")
    team = CareTeam.objects.create(name="org-a cardiology", organization=Organization.objects.get(slug=ORGANIZATION))
    team.members.add(member.user)
    review = Review.objects.get()
    assert member.client.get(f"/admin/review/review/{review.pk}/change/").status_code == 200
