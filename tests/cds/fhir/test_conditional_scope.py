"""Conditional create returns the match, so it needs read and search scope besides create (as HAPI FHIR)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cds.ecg.models import Patient
from tests.conftest import FhirTestClient, api_client_token

pytestmark = pytest.mark.django_db

IF_NONE_EXIST = "identifier=urn:oid:1.2.3.4.mrn|MRN-0001"


@pytest.fixture
def create_only(client: Client) -> FhirTestClient:
    """Persona: a feed that may create Patients and Observations but not read or search them."""
    return FhirTestClient(Client(), api_client_token(client, "system/Patient.c system/Observation.c"))


def test_it_refuses_a_create_only_clients_conditional_create_without_revealing_the_match(
    service_account: Any, create_only: FhirTestClient, patient_resource: dict[str, Any]
) -> None:
    existing = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    response = create_only.post("/fhir/Patient", patient_resource, HTTP_IF_NONE_EXIST=IF_NONE_EXIST)
    assert response.status_code == 403
    body = response.content.decode()
    assert "read and search scope" in body and existing not in body and "MRN-0001" not in body
    assert "Location" not in response.headers
    assert Patient.objects.count() == 1  # nothing created either


def test_it_still_lets_a_create_only_client_create(
    create_only: FhirTestClient, patient_resource: dict[str, Any]
) -> None:
    response = create_only.post("/fhir/Patient", patient_resource)
    assert response.status_code == 201


def test_it_refuses_a_create_only_clients_bundle_if_none_exist(
    service_account: Any, create_only: FhirTestClient, patient_resource: dict[str, Any]
) -> None:
    existing = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient_resource,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": IF_NONE_EXIST},
            }
        ],
    }
    response = create_only.post("/fhir", bundle)
    assert response.status_code == 403
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].request.ifNoneExist"] and existing not in response.content.decode()
    batch = create_only.post("/fhir", bundle | {"type": "batch"}).json()
    assert batch["entry"][0]["response"]["status"] == "403"
    assert Patient.objects.count() == 1


def test_it_returns_the_match_to_a_client_with_read_and_search_scope(
    service_account: Any, patient_resource: dict[str, Any]
) -> None:
    first = service_account.post("/fhir/Patient", patient_resource, HTTP_IF_NONE_EXIST=IF_NONE_EXIST)
    again = service_account.post("/fhir/Patient", patient_resource, HTTP_IF_NONE_EXIST=IF_NONE_EXIST)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_it_says_so_in_the_capability_statement(client: Client) -> None:
    documentation = client.get("/fhir/metadata").json()["rest"][0]["documentation"]
    assert "needs read and search scope" in documentation and "organisation" in documentation
