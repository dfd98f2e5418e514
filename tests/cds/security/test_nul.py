"""NUL characters (which PostgreSQL cannot store) are refused with 400 everywhere, never a 500.

Schemathesis found the first one (a CDS Hooks ``patientId`` with U+0000 raised a DataError); the
same held for FHIR search parameters, read ids and any string in a created resource.
"""

from __future__ import annotations

from typing import Any

import pytest

from cds.fhir.models import StoredResource

pytestmark = pytest.mark.django_db


def assert_fhir_nul_refused(response: Any, expression: str | None) -> None:
    assert response.status_code == 400, response.content
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "invalid" and "NUL" in issue["diagnostics"]
    assert issue.get("expression") == ([expression] if expression else None)


@pytest.mark.parametrize(
    ("path", "expression"),
    [
        ("/fhir/Patient?identifier=urn:x|a%00b", "identifier"),
        ("/fhir/Observation?code=%00", "code"),
        ("/fhir/Patient?na%00me=x", "name"),
        ("/fhir/Patient/a%00b", None),
    ],
)
def test_it_refuses_nul_in_fhir_urls(service_account: Any, path: str, expression: str | None) -> None:
    assert_fhir_nul_refused(service_account.get(path), expression)


def test_it_refuses_nul_in_a_created_resource_and_stores_nothing(
    service_account: Any, patient_resource: dict[str, Any], ecg_factory: Any
) -> None:
    patient = {**patient_resource, "identifier": [{"system": "urn:x", "value": "a\x00b"}]}
    assert_fhir_nul_refused(service_account.post("/fhir/Patient", patient), "Patient.identifier[0].value")
    observation = ecg_factory(9)
    observation["component"][2]["code"]["coding"][0]["display"] = "lead\x00"
    assert_fhir_nul_refused(
        service_account.post("/fhir/Observation", observation), "Observation.component[2].code.coding[0].display"
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient", "x\x00": 1}}],
    }
    assert_fhir_nul_refused(service_account.post("/fhir", bundle), "Bundle.entry[0].resource.x")
    assert StoredResource.objects.count() == 0


def test_it_lets_an_escaped_backslash_before_u0000_through(
    service_account: Any, patient_resource: dict[str, Any]
) -> None:
    patient = {**patient_resource, "identifier": [{"system": "urn:x", "value": "C:\\u0000"}]}  # no NUL: text
    assert service_account.post("/fhir/Patient", patient).status_code == 201


def test_it_refuses_nul_in_a_cds_hooks_request(service_account: Any) -> None:
    body = {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "abc\x00"}}
    response = service_account.post("/cds-services/ecg-ai-findings", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "message": "$this.context.patientId contains a NUL character, which cannot be stored",
        "extra": {"where": "$this.context.patientId"},
    }
